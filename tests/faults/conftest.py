"""Prints what the fault tests measured (status histogram, timings, memory) in pytest's
summary, so it shows in `pytest -q` output even when every test passes."""

import faultlib


def pytest_terminal_summary(terminalreporter):
    if faultlib.REPORT:
        terminalreporter.section("fault tests")
        for line in faultlib.REPORT:
            terminalreporter.write_line(line)
