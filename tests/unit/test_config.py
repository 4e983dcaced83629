"""The teams' YAML: every bad file in tests/configs/bad is refused with the words it expects.

Each bad file starts with `# error: WORDS` lines (a folder case has them in `expect.txt` as `error: WORDS`).
Every WORDS must appear in one problem line that starts with the file's path, so writing the dotted
path in WORDS (`workflows.wf.tasks.b.inputs.x: unknown upstream task`) checks the place as well;
WORDS ending in `$` must end the line (nothing said after them).
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from flow45.config import FieldSpec, Signature, WorkflowSpec, load_config
from flow45.errors import ConfigError
from flow45.types import TypeRegistry

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "configs" / "bad"
EXPECT = re.compile(r"^(?:#\s*)?error:\s*(.+?)\s*$", re.M)


def _bad_cases():
    for file in sorted(BAD.glob("*.yaml")):
        yield pytest.param(file, EXPECT.findall(file.read_text()), id=file.name)
    for folder in sorted(p for p in BAD.iterdir() if p.is_dir()):
        yield pytest.param(folder, EXPECT.findall((folder / "expect.txt").read_text()), id=folder.name)


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


@pytest.mark.parametrize("path, expected", _bad_cases())
def test_bad_config_is_refused_naming_file_place_and_fault(path, expected):
    assert expected, f"{path.name} says no `error:` words to expect"
    problems = _problems(path)
    for words in expected:
        said = (lambda p: p.endswith(words[:-1])) if words.endswith("$") else (lambda p: words in p)
        assert any(p.startswith(str(path)) and said(p) for p in problems), (
            f"expected {words!r} in a problem of {path}, got:\n" + "\n".join(problems)
        )


def test_example_config_loads():
    [team] = load_config(ROOT / "examples" / "config")
    assert team.team == "reports"
    monthly = team.workflows["monthly_report"]
    assert monthly.schedule.timezone == "Europe/Amsterdam"
    assert monthly.tasks["publish"].upstream() == ["approve", "render"]
    assert (monthly.tasks["extract"].retry_delay, monthly.tasks["extract"].lease) == (30, 600)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_every_problem_of_a_file_is_reported_together(tmp_path):
    shape = _write(tmp_path, "shape.yaml", """
team: reports
workflows:
  wf:
    schedule: {cron: "0 6 * * *", catchup: sometimes}
    tasks:
      a: {function: make, output: Document, retires: 3, priority: 10}
""")
    assert len(_problems(shape)) == 3
    refs = _write(tmp_path, "refs.yaml", """
team: reports
types: {Document: {fields: {uri: string}}}
workflows:
  wf:
    schedule: {cron: "0 6 * * *", timezone: Mars/Olympus}
    tasks:
      a: {function: make, output: Documents}
      b: {function: render, output: Document, inputs: {doc: z}}
""")
    problems = _problems(refs)
    assert [p.split(": ")[1] for p in problems] == [
        "workflows.wf.schedule.timezone", "workflows.wf.tasks.a.output", "workflows.wf.tasks.b.inputs.doc",
    ]


def test_a_broken_file_does_not_hide_the_problems_of_the_others(tmp_path):
    _write(tmp_path, "a.yaml", "team: reports\nworkflows: wf: {}\n")
    _write(tmp_path, "b.yaml", "team: reports\ntypes: {Doc: {fields: {n: integr}}}\n")
    problems = _problems(tmp_path)
    assert [Path(p.split(":")[0]).name for p in problems] == ["a.yaml", "b.yaml"]


def test_a_file_that_cannot_be_read_in_a_folder_is_a_problem_not_left_out(tmp_path):
    _write(tmp_path, "a.yaml", "team: reports\n")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "moved.yaml")
    os.mkfifo(tmp_path / "c.yaml")
    assert sorted(_problems(tmp_path)) == [f"{tmp_path / 'b.yaml'}: cannot read: No such file or directory",
                                           f"{tmp_path / 'c.yaml'}: not a regular file"]


def test_a_configmap_volume_is_read_once_without_its_hidden_copies(tmp_path):
    """Kubernetes mounts a ConfigMap as `..2026_12_07_09_00_00.1/reports.yaml`, a `..data` link to that
    folder, and `reports.yaml -> ..data/reports.yaml`; Emacs leaves `.#reports.yaml` while it edits one."""
    (tmp_path / "..2026_12_07_09_00_00.1").mkdir()
    _write(tmp_path / "..2026_12_07_09_00_00.1", "reports.yaml", (ROOT / "examples/config/reports.yaml").read_text())
    (tmp_path / "..data").symlink_to("..2026_12_07_09_00_00.1")
    (tmp_path / "reports.yaml").symlink_to("..data/reports.yaml")
    _write(tmp_path, ".#reports.yaml", "team: reports\nnot: [finished")
    [team] = load_config(tmp_path)
    assert sorted(team.workflows) == ["monthly_report", "nightly_sales"]
    assert set(team.origins.values()) == {str(tmp_path / "reports.yaml")}


def test_a_folder_that_cannot_be_read_is_a_problem_not_left_out(tmp_path, monkeypatch):
    _write(tmp_path, "a.yaml", "team: reports\n")
    (tmp_path / "sub").mkdir(mode=0o300)
    listed = os.scandir

    def scandir(path="."):  # as for a user other than root, who reads every folder
        if Path(path) == tmp_path / "sub":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return listed(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert _problems(tmp_path) == [f"{tmp_path / 'sub'}: cannot read this folder: Permission denied"]


def test_an_unknown_list_item_type_is_reported_once():
    assert len(_problems(BAD / "unknown_list_item_type.yaml")) == 1


GOOD = """
team: reports
types:
  Partition:
    fields:
      region: {type: enum, values: [emea, apac]}
      uri: string
  Summary:
    fields:
      main: Partition
      partitions: {type: list, items: Partition}
      note: {type: string, optional: true}
workflows:
  wf:
    tasks:
      load: {function: load, output: Partition}
      tidy: {function: tidy, output: Partition, after: [load]}
      sum: {function: summarize, output: Summary, inputs: {first: load}, after: [tidy]}
"""


@pytest.fixture
def good(tmp_path):
    [team] = load_config(_write(tmp_path, "good.yaml", GOOD))
    return team


def test_field_shorthand_and_optional(good):
    fields = good.types["Summary"].fields
    assert good.types["Partition"].fields["uri"] == FieldSpec(type="string")
    assert fields["note"].optional and not fields["main"].optional


def test_enums_lists_and_nested_declared_types_become_working_types(good):
    types = TypeRegistry(good.types)
    part = {"region": "emea", "uri": "s3://b/emea.csv"}
    assert types.validate("Summary", {"main": part, "partitions": [part, {**part, "region": "apac"}]}) == {
        "main": part, "partitions": [part, {**part, "region": "apac"}], "note": None,
    }
    with pytest.raises(ValueError, match="region"):
        types.validate("Summary", {"main": {**part, "region": "mars"}, "partitions": []})


def test_after_orders_without_passing_data(good):
    tasks = good.workflows["wf"].tasks
    assert tasks["tidy"].upstream() == ["load"]
    assert tasks["sum"].upstream() == ["load", "tidy"]
    signature, _ = good.signatures()["summarize"]
    assert signature == Signature((("first", "Partition"),), "Summary")


@pytest.mark.parametrize("written, seconds", [("30s", 30), ("10m", 600), ("1h30m", 5400), ("45", 45), ("2.5", 2.5)])
def test_durations(tmp_path, written, seconds):
    text = GOOD.replace("{function: load, output: Partition}", f"{{function: load, output: Partition, lease: {written}}}")
    [team] = load_config(_write(tmp_path, "good.yaml", text))
    assert team.workflows["wf"].tasks["load"].lease == seconds



@pytest.mark.parametrize("written", ["inf", "nan", "1e400"])
def test_a_number_that_is_no_duration_is_refused(tmp_path, written):
    text = GOOD.replace("{function: load, output: Partition}", f"{{function: load, output: Partition, lease: {written}}}")
    with pytest.raises(ConfigError, match=f"'{written}' is not a duration"):
        load_config(_write(tmp_path, "good.yaml", text))


def test_a_version_stored_before_the_century_check_still_loads():
    stored = WorkflowSpec.model_validate({"tasks": {"load": {"function": "load", "output": "Partition",
                                                             "lease": 99999999999 * 86400.0}}})
    assert stored.tasks["load"].lease == 99999999999 * 86400.0  # deploy refuses it now; reading it must not


HUMAN = """\
team: acme
groups:
  finance: [ann, bob]
types:
  Ok: {fields: {ok: boolean}}
workflows:
  wf:
    tasks:
      approve:
        function: approve
        output: Ok
        human: true
        assignees: [carol, "@finance"]
        due: 4h
        reminders: [1h, 3h]
        overdue: {escalate: ["@finance", dave]}
      check: {function: check, output: Ok, human: true, due: 1d, overdue: {default: {ok: false}}, inputs: {a: approve}}
      sign: {function: sign, output: Ok, human: true, due: 30m, overdue: skip, after: [check]}
"""


def test_human_task_assignment_loads_in_its_short_forms(tmp_path):
    [team] = load_config(_write(tmp_path, "team.yaml", HUMAN))
    tasks = team.workflows["wf"].tasks
    assert team.groups == {"finance": ["ann", "bob"]}
    assert (tasks["approve"].assignees, tasks["approve"].due, tasks["approve"].reminders) == (["carol", "@finance"], 14400, [3600, 10800])
    assert (tasks["approve"].overdue.action, tasks["approve"].overdue.to) == ("escalate", ["@finance", "dave"])
    assert (tasks["check"].overdue.action, tasks["check"].overdue.output) == ("default", {"ok": False})
    assert tasks["sign"].overdue.action == "skip" and tasks["sign"].assignees == []
    # What a version stores reads back the same (the canonical form is accepted too).
    assert type(tasks["approve"]).model_validate(tasks["approve"].model_dump(mode="json")) == tasks["approve"]


def test_a_group_declared_in_two_files_is_refused_naming_both(tmp_path):
    _write(tmp_path, "a.yaml", HUMAN)
    _write(tmp_path, "b.yaml", "team: acme\ngroups:\n  finance: [zoe]\n")
    problems = _problems(tmp_path)
    assert any("b.yaml: groups.finance: already declared in" in p and p.endswith("a.yaml") for p in problems), problems


def test_yaml_is_read_as_1_2_so_words_times_and_numbers_mean_what_they_say(tmp_path):
    """YAML 1.1 read the enum values yes and no, the country code NO and the task name off as
    booleans, 16:30 as 990 (base 60) and 010 as 8 (octal)."""
    [team] = load_config(_write(tmp_path, "words.yaml", """\
team: reports
types:
  Choice:
    fields:
      answer: {type: enum, values: [yes, no, maybe]}
      country: {type: enum, values: [NO, SE]}
      day: {type: enum, values: [2026-03-01, 2026-03-02]}
      note: {type: string, optional: yes}
workflows:
  wf:
    tasks:
      off: {function: make, output: Choice, retries: 010}
      later: {wait_until: 16:30, after: [off]}
"""))
    fields = team.types["Choice"].fields
    assert (fields["answer"].values, fields["country"].values) == (["yes", "no", "maybe"], ["NO", "SE"])
    assert fields["day"].values == ["2026-03-01", "2026-03-02"]
    assert fields["note"].optional is True, "a boolean field still takes yes"
    tasks = team.workflows["wf"].tasks
    assert tasks["off"].retries == 10 and tasks["later"].wait_until == "16:30" and tasks["later"].after == ["off"]


def _scheduled(folder: Path, schedule: str) -> Path:
    """A team file with one workflow whose schedule is `0 6 * * *` and `schedule`'s keys."""
    return _write(folder, "scheduled.yaml", f"""
team: reports
types: {{Document: {{fields: {{uri: string}}}}}}
workflows:
  wf:
    schedule: {{cron: "0 6 * * *", {schedule}}}
    tasks:
      a: {{function: make, output: Document}}
""")


@pytest.mark.parametrize("zone, said", [
    ("europe/amsterdam", "unknown timezone 'europe/amsterdam'; did you mean Europe/Amsterdam?"),
    ("Europe/Amsterdm", "unknown timezone 'Europe/Amsterdm'; did you mean Europe/Amsterdam?"),
    # POSIX's sign: Etc/GMT-5 is five hours ahead of UTC, where 'UTC+5' meant to be
    ("UTC+5", "unknown timezone 'UTC+5': a fixed offset is written Etc/GMT-5 (the sign is POSIX's"),
    ("GMT-3", "a fixed offset is written Etc/GMT+3"),
    ("GMT-14", "unknown timezone 'GMT-14': no zone is -14 hours from UTC"),  # not Etc/GMT-14, fourteen hours ahead
    ("localtime", "'localtime' is the zone of whichever machine reads it, which another machine need not share"),
    ("Factory", "'Factory' is the tz database's placeholder, no place's time"),
])
def test_a_timezone_that_names_no_place_is_refused_naming_the_one_meant(tmp_path, zone, said):
    path = _scheduled(tmp_path, f'timezone: "{zone}"')
    [problem] = _problems(path)
    assert "workflows.wf.schedule.timezone" in problem and said in problem, problem


def test_a_fixed_offset_zone_is_taken(tmp_path):
    path = _scheduled(tmp_path, "timezone: Etc/GMT-5")
    [team] = load_config(path)
    assert team.workflows["wf"].schedule.timezone == "Etc/GMT-5"


def test_a_machine_without_any_zone_database_is_told_so(tmp_path, monkeypatch):
    import zoneinfo

    def missing(name):
        raise zoneinfo.ZoneInfoNotFoundError(name)

    monkeypatch.setattr(zoneinfo, "ZoneInfo", missing)
    monkeypatch.setattr(zoneinfo, "available_timezones", set)
    path = _scheduled(tmp_path, "timezone: UTC")
    [problem] = _problems(path)
    assert "unknown timezone 'UTC': this machine has no zone database (install the tzdata package)" in problem


@pytest.mark.parametrize("window, said", [
    ('start: "2027-02-29"', "schedule.start: '2027-02-29' names no real day or time: day is out of range for month"),
    ("start: 2027", "schedule.start: 2027 is not a date or a time (such as 2027-01-31 or 2027-01-31T06:00)"),
    ('end: "next month"', "schedule.end: expected a date such as 2027-01-31 or a time such as 2027-01-31T06:00, "
                          "got 'next month'"),
    ('start: "2027-02-01", end: "2027-01-31"', "schedule.end: '2027-01-31' is before the start, '2027-02-01': "
                                               "the schedule would make no run"),
])
def test_a_schedule_window_that_names_no_day_or_ends_before_it_starts_is_refused(tmp_path, window, said):
    path = _scheduled(tmp_path, window)
    [problem] = _problems(path)
    assert f"workflows.wf.{said}" in problem, problem


def test_a_schedule_without_a_window_is_stored_as_before_it_had_one():
    """The stored document, and so its content hash: a redeploy after an upgrade makes no new version."""
    from flow45.store.specs import spec_document

    workflow = WorkflowSpec.model_validate({"schedule": {"cron": "0 6 * * *"},
                                            "tasks": {"a": {"function": "make", "output": "Document"}}})
    assert spec_document(workflow, {})["workflow"]["schedule"] == {"cron": "0 6 * * *", "timezone": "UTC",
                                                                   "catchup": "latest"}


@pytest.mark.parametrize("written, said", [
    ("retries: true", "tasks.a.retries: expected a whole number, got true"),
    ('priority: "5"', 'tasks.a.priority: expected a whole number, got "5"'),
    ("retries: 1.5", "tasks.a.retries: expected a whole number, got 1.5"),
    ('retry_backoff: "2"', 'tasks.a.retry_backoff: expected a number, got "2"'),
    ("retry_jitter: yes", 'tasks.a.retry_jitter: expected a number, got "yes"'),
])
def test_a_number_is_not_read_from_a_boolean_or_a_string(tmp_path, written, said):
    """YAML wrote what it wrote: `retries: true` is not one retry, nor `priority: "5"` five."""
    task = f"a: {{function: fa, output: Blob, {written}}}"
    path = _write(tmp_path, "team.yaml", "team: acme\ntypes: {Blob: {fields: {uri: string}}}\n"
                                         f"workflows: {{w: {{tasks: {{{task}}}}}}}\n")
    [problem] = _problems(path)
    assert problem.endswith(f"team.yaml: workflows.w.{said}"), problem
