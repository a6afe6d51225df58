import io
import json
import logging
import shlex

import pytest
from detect_secrets.core.scan import scan_line
from detect_secrets.settings import default_settings

from tests.support.secrets import secret_samples
from tether.logs import configure_logging
from tether.security.credentials import new_secret, runner_credential
from tether.security.redaction import MASK, RedactingFilter, redact, redact_json, redact_value
from tether.security.stream_redaction import StreamRedactor
from tether.types import new_id


def test_redact_known_shapes() -> None:
    samples = [
        "tta_" + "a" * 40,
        "Authorization: Bearer abc.def-ghi",
        "api_key=sk-verysecretvalue12345",
        "postgresql://user:pw@host/db",
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxMjM0NTYifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
        "password: hunter2",
    ]
    for text in samples:
        out = redact(text)
        assert MASK in out, text
    assert "hunter2" not in redact("password: hunter2")
    assert redact("postgresql://user:pw@host/db") == f"postgresql://user:{MASK}@host/db"
    assert redact("nothing secret here") == "nothing secret here"


@pytest.mark.parametrize("sample", secret_samples(), ids=lambda s: s.kind)
def test_every_kind_is_masked_in_text_and_in_json(sample) -> None:
    texts = [sample.text, f"before\n{sample.text}\nafter", f"x={sample.text};"]
    texts.append(shlex.quote(f"say {sample.text} and more"))  # shell quoting: '"'"'
    for text in texts:
        out = redact(text)
        assert not any(part in out for part in sample.secrets), out
    # JSON-encoded once more (escaped newlines before the secret), and as data
    encoded = json.dumps({"stdout": f"line one\n{sample.text}\nline three"})
    assert not any(part in redact(encoded) for part in sample.secrets)
    stored = redact_json(encoded)
    assert json.loads(stored)["stdout"].startswith("line one\n")  # still valid JSON
    assert not any(part in stored for part in sample.secrets)


def test_a_runner_credential_is_masked_whole() -> None:
    secret, _ = new_secret()
    cred = runner_credential(new_id("rnr"), secret)
    out = redact(f"TETHER_CREDENTIAL={cred} and {cred}.")
    assert secret not in out
    assert "." + secret[:8] not in out


def test_ordinary_text_is_left_alone() -> None:
    for text in (
        "max_tokens=100 total tokens: 5",
        "the basic idea is a task-1234567890abcdefghij",
        "passed: 12 tests",
        "See https://example.com/path for details",
    ):
        assert redact(text) == text


def test_redact_value_masks_secret_keys_and_limits_depth() -> None:
    data = {"token": "abc", "nested": [{"api_key": "k", "name": "n"}], "n": 3}
    assert redact_value(data) == {"token": MASK, "nested": [{"api_key": MASK, "name": "n"}], "n": 3}
    deep: object = "leaf"
    for _ in range(200):
        deep = [deep]
    assert MASK in json.dumps(redact_value(deep))


def test_redact_json_keeps_text_that_has_no_secret() -> None:
    assert redact_json('{"a":  1}') == '{"a":  1}'
    assert redact_json("not json, password=x") == f"not json, password={MASK}"


def test_detect_secrets_findings_are_masked() -> None:
    """detect-secrets' plugins are the reference: whatever they flag (bar entropy
    guesses), the redactor masks."""
    lines = [s.text for s in secret_samples() if s.kind != "pem"]
    lines += ["-----BEGIN OPENSSH PRIVATE KEY-----", 'password = "hunter2hunter2"']
    checked = 0
    with default_settings():
        for line in lines:
            for found in scan_line(line):
                if "Entropy" in found.type or not found.secret_value:
                    continue
                checked += 1
                value = found.secret_value
                assert redact(line) != line, (found.type, line)
                if len(value) >= 8:
                    assert value not in redact(line), (found.type, line)
    assert checked >= 8


@pytest.mark.parametrize("sample", secret_samples(), ids=lambda s: s.kind)
def test_stream_redaction_masks_a_secret_split_anywhere(sample) -> None:
    text = f"first line\n{sample.text}\nlast line\n"
    for cut in range(1, len(text)):
        for parts in (
            [text[:cut], text[cut:]],
            [text[: cut // 2], text[cut // 2 : cut], text[cut:]],
        ):
            stream = StreamRedactor()
            out = "".join(stream.feed(p) for p in parts) + stream.flush()
            assert not any(s in out for s in sample.secrets), (cut, out)
            assert out.startswith("first line\n")
            assert out.endswith("last line\n")


def test_stream_redaction_releases_complete_lines_at_once() -> None:
    stream = StreamRedactor()
    assert stream.feed("hello\nwor") == "hello\n"
    assert stream.feed("ld\n") == "world\n"
    assert stream.flush() == ""


def test_stream_redaction_masks_a_pem_block_longer_than_it_holds() -> None:
    stream = StreamRedactor(window=64, max_hold=256)
    body = [f"{i:04d}" + "Q" * 60 for i in range(40)]
    chunks = ["ok\n-----BEGIN PRIVATE KEY-----\n", *(b + "\n" for b in body)]
    chunks += ["-----END PRI", "VATE KEY-----\nafter\n"]
    out = "".join(stream.feed(c) for c in chunks) + stream.flush()
    assert "QQQQ" not in out
    assert out.startswith("ok\n")
    assert out.endswith("after\n")


def test_log_records_are_redacted_before_output() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, filters=[RedactingFilter()])
    secret = "tta_" + "z" * 40
    gh = "ghp_" + "q" * 36
    logging.getLogger("t").info(
        "got %s", secret, extra={"header": f"Bearer {secret}", "token": "t0", "method": gh}
    )
    try:
        raise ValueError(f"boom {gh}")
    except ValueError:
        logging.getLogger("t").exception("failed")
    out = stream.getvalue()
    assert secret not in out
    assert gh not in out
    assert '"token":"[redacted]"' in out
    assert "ValueError: boom [redacted]" in out
    configure_logging("warning", "text")
