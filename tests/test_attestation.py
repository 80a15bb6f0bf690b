"""A client cannot choose the variant a model server records: only the gateway's scope
key (in process) or its HMAC proof (remote) is believed."""

from __future__ import annotations

import os
import threading
import time

import pytest

from shipml.attestation import DIRECT, MAX_AGE_S, attested_variant, load_key, proof, verified
from shipml.errors import ConfigError

KEY = bytes(range(32))


def scope(headers, **extra):
    return {"headers": headers, **extra}


def test_a_proof_is_bound_to_the_key_the_request_and_the_time():
    good = proof(KEY, b"r1", b"challenger")
    assert verified(KEY, b"r1", b"challenger", good)
    assert not verified(KEY, b"r2", b"challenger", good)  # replayed for another request
    assert not verified(KEY, b"r1", b"champion", good)  # another variant
    assert not verified(bytes(32), b"r1", b"challenger", good)  # another key
    stale = proof(KEY, b"r1", b"challenger", now=time.time() - MAX_AGE_S - 5)
    assert not verified(KEY, b"r1", b"challenger", stale)
    for garbage in (b"", b"t=", b"t=abc;00", b"t=1;", b"x" * 5000, b"t=99999999999999;ab"):
        assert not verified(KEY, b"r1", b"challenger", garbage)


def test_only_the_scope_key_or_a_valid_proof_names_the_variant():
    forged = [(b"x-shipml-variant", b"challenger")]
    assert attested_variant(scope(forged), b"r1", KEY) == DIRECT
    assert attested_variant(scope(forged), b"r1", b"") == DIRECT
    signed = [*forged, (b"x-shipml-variant-proof", proof(KEY, b"r1", b"challenger"))]
    assert attested_variant(scope(signed), b"r1", KEY) == "challenger"
    assert attested_variant(scope(signed), b"r1", b"") == DIRECT  # a server without the key
    assert attested_variant(scope([], **{"shipml.variant": "a"}), b"r1", b"") == "a"


def test_the_key_file_is_made_once_private_and_shared(tmp_path):
    path = tmp_path / "rollout" / "attestation.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_key(path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["attestation.key"]  # no leftovers
    assert load_key(tmp_path / "none", create=False) == b""
    path.write_text("not hex")
    with pytest.raises(ConfigError, match="16 bytes"):
        load_key(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_key(tmp_path)  # a folder
