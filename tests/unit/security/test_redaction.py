import io
import logging

from tether.logs import configure_logging
from tether.security.redaction import MASK, RedactingFilter, redact, redact_value


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


def test_redact_value_masks_secret_keys() -> None:
    data = {"token": "abc", "nested": [{"api_key": "k", "name": "n"}], "n": 3}
    assert redact_value(data) == {"token": MASK, "nested": [{"api_key": MASK, "name": "n"}], "n": 3}


def test_log_records_are_redacted_before_output() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, filters=[RedactingFilter()])
    secret = "tta_" + "z" * 40
    logging.getLogger("t").info(
        "got %s", secret, extra={"header": f"Bearer {secret}", "token": "t0"}
    )
    out = stream.getvalue()
    assert secret not in out
    assert '"token":"[redacted]"' in out
    configure_logging("warning", "text")
