import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from server.logs import configure_logging, get_logger

Lines = Callable[[], list[dict[str, object]]]


@pytest.fixture
def json_logs() -> Iterator[Lines]:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)

    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line]

    yield lines
    logging.getLogger().handlers.clear()


def test_keys_outside_the_allow_list_are_dropped_with_their_names_noted(json_logs: Lines) -> None:
    get_logger("t").info(
        "patient.updated", patient_id="p-1", name="Canary Person", phone="555-0199", note="x"
    )
    (line,) = json_logs()
    assert line["event"] == "patient.updated"
    assert line["patient_id"] == "p-1"
    assert line["redacted"] == ["name", "note", "phone"]
    assert "Canary" not in json.dumps(line) and "555-0199" not in json.dumps(line)


def test_tracebacks_carry_no_local_variables(json_logs: Lines) -> None:
    def fail(address: str) -> None:
        raise RuntimeError("boom")

    try:
        fail("1 Canary Road")
    except RuntimeError:
        get_logger("t").exception("request.failed", error_type="RuntimeError")
    (line,) = json_logs()
    assert "boom" in json.dumps(line["exception"])
    assert "Canary" not in json.dumps(line)


def test_standard_library_records_pass_the_same_filter(json_logs: Lines) -> None:
    logging.getLogger("somelib").warning("plain message")
    (line,) = json_logs()
    assert line["event"] == "plain message"
    assert line["logger"] == "somelib"
    assert line["level"] == "warning"
