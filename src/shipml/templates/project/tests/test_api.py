"""API tests of this project (the api suite), against a running model server: the one
`shipml test --against URL` names, or one started for the tests."""

import json
import urllib.request

import pytest

pytestmark = pytest.mark.api


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_predict_answers_a_gentoo_with_probabilities(server_url):
    row = {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0,
           "flipper_length_mm": 217.0, "body_mass_g": 5080.0, "sex": None}
    [answer] = post(f"{server_url}/predict", {"instances": [row]})["predictions"]
    assert answer["label"] == "Gentoo"
    assert abs(sum(answer["probabilities"].values()) - 1.0) < 1e-4
