"""JUnit XML for CI systems: one test case per check; regressions are failures, invalid checks errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from casa_eval.check.gate import CheckResult


def write_junit(results: list[CheckResult], path: Path) -> None:
    suite = ET.Element("testsuite", name="casa-eval check", tests=str(len(results)),
                       failures=str(sum(r.verdict == "fail" for r in results)),
                       errors=str(sum(r.verdict == "invalid" for r in results)),
                       skipped=str(sum(r.verdict == "skip" for r in results)))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"casa_eval.{r.kind}", name=r.subject)
        message = f"value {r.value}, threshold {r.threshold}" + (f": {r.detail}" if r.detail else "")
        if r.verdict == "fail":
            ET.SubElement(case, "failure", message=message)
        elif r.verdict == "invalid":
            ET.SubElement(case, "error", message=message)
        elif r.verdict == "skip":
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = message
    root = ET.Element("testsuites")
    root.append(suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
