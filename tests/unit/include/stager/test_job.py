"""Job documents, endpoints, the streamer's mapping and the drPass encryption."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from include.stager.credentials import decrypt_client, encrypt_password, looks_encrypted
from include.stager.dac import dac_collection, streamer_job
from include.stager.errors import UserError
from include.stager.job import DEFAULT_TIMEOUT, DEFAULT_TIMEOUT_NOPROGRESS, parse_job
from include.stager.paths import parse_endpoint, parse_pair
from include.stager.settings import DEFAULT_STREAMER_TIMEOUTS, load_settings

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def doc(**kw):
    return {"title": "t", "stagerUser": "alice", "drUser": "alice@ru.nl", "drPass": "x",
            "srcURL": "/project/3010000.01/raw", "dstURL": "irods:/nl.ru.donders/dccn/DAC_1/raw", **kw}


@pytest.mark.parametrize(("url", "kind", "path"), [
    ("irods:/zone/a/b/", "irods", "/zone/a/b"),
    ("i:/zone/a//b", "irods", "/zone/a/b"),
    ("/project/x y/ü", "posix", "/project/x y/ü"),
])
def test_endpoints(url, kind, path):
    e = parse_endpoint(url)
    assert (e.kind, e.path) == (kind, path)


@pytest.mark.parametrize("url", ["relative/path", "irods:zone/a", "irods:/zone", "/a/../b", ""])
def test_bad_endpoints(url):
    with pytest.raises(UserError):
        parse_endpoint(url)


def test_one_side_irods_the_other_posix():
    with pytest.raises(UserError, match="one side"):
        parse_pair("/a", "/b")
    with pytest.raises(UserError, match="one side"):
        parse_pair("irods:/z/a", "i:/z/b")


def test_job_defaults_and_validation():
    job = parse_job(doc())
    assert (DEFAULT_TIMEOUT, DEFAULT_TIMEOUT_NOPROGRESS) == (259200, 3600)
    assert (job.timeout, job.timeout_noprogress) == (DEFAULT_TIMEOUT, DEFAULT_TIMEOUT_NOPROGRESS)
    assert "drPass" not in job.public()
    assert parse_job(doc(timeout=0, timeout_noprogress="0")).timeout_noprogress == 0
    for bad, match in [(doc(srcURL=""), "missing"), (doc(timeout=-1), "negative"), (doc(extra=1), "unknown"),
                       (doc(stagerUserEmail="nope"), "e-mail"), (doc(stagerUser="a b"), "user name")]:
        with pytest.raises(UserError, match=match):
            parse_job(bad)


@pytest.mark.parametrize("oaep", [False, True])
def test_client_drpass_round_trip(oaep):
    token = encrypt_password("pässword", KEY, oaep=oaep)
    assert decrypt_client(token, KEY) == "pässword"


def test_drpass_interoperates_with_a_pkcs1v15_client():
    """What the DCCN stager's Go client does: rsa.EncryptPKCS1v15 then base64.StdEncoding."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import padding

    token = base64.b64encode(KEY.public_key().encrypt(b"secret", padding.PKCS1v15())).decode()
    assert decrypt_client(token, KEY) == "secret"


@pytest.mark.parametrize("value", ["secret", "c2VjcmV0", "", "!!not base64!!"])
def test_plaintext_or_garbage_drpass_is_refused(value):
    with pytest.raises(UserError, match="RSA-encrypted"):
        decrypt_client(value, KEY)
    assert not looks_encrypted(value, KEY)


def test_streamer_job_and_modalities():
    mapping = {"3010000.01": "/z/dccn/DAC_3010000.01"}
    assert dac_collection("3010000.01", mapping) == "/z/dccn/DAC_3010000.01"
    with pytest.raises(UserError):
        dac_collection("301", mapping)
    for modality, (t, n) in {"MRI": (10800, 600), "MEG": (3600, 1800), "OPM": (1800, 600)}.items():
        job = streamer_job("3010000.01", "/project/3010000.01/raw/sub-01", modality.lower(), mapping=mapping,
                           timeouts=DEFAULT_STREAMER_TIMEOUTS, user="svc", encrypted_password="E",
                           stager_user="svc")
        assert (job["timeout"], job["timeout_noprogress"]) == (t, n)
        assert job["dstURL"] == "irods:/z/dccn/DAC_3010000.01/raw/sub-01"
        parse_job(job)
    with pytest.raises(UserError, match="modality"):
        streamer_job("3010000.01", "/p", "EEG", mapping=mapping, timeouts=DEFAULT_STREAMER_TIMEOUTS, user="s",
                     encrypted_password="E", stager_user="s")


def test_settings_from_environment_and_overrides():
    s = load_settings({"threads": "8"}, environ={"SDP_STAGER_ADMINS": "a@x, b@x", "SDP_STAGER_THREADS": "2"})
    assert s.threads == 8 and s.admins == ("a@x", "b@x")


def test_parallel_stream_and_runner_settings():
    d = load_settings(environ={})
    assert (d.num_threads, d.parallel_threshold, d.runner_python) == (4, 32 << 20, "")
    s = load_settings({"num_threads": 0}, environ={"SDP_STAGER_PARALLEL_THRESHOLD": "1000",
                                                   "SDP_STAGER_RUNNER_PYTHON": "/usr/bin/python3"})
    assert (s.num_threads, s.parallel_threshold, s.runner_python) == (1, 1000, "/usr/bin/python3")
