"""API tests of this project (the api suite), against a running model server: the one
`shipml test --against URL` names, or one started for the tests."""

import json
import math
import urllib.request

import pytest

pytestmark = pytest.mark.api

# A row of the data (missing values as None).
ROW = $row


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_predict_answers_a_row_of_the_data(server_url):
    [answer] = post(f"{server_url}/predict", {"instances": [ROW]})["predictions"]
$api_check
