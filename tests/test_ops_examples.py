"""examples/ops/ works as written: the crontab line and the systemd service run here, as cron
and systemd would run them (an empty environment, a minimal PATH), against a temporary copy
of their folders; the unit files pass ``systemd-analyze verify``; the alert rules pass
``promtool check rules`` and fire on the series they are meant for (``promtool test rules``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from digits_onnx.inference.cli import build_parser
from digits_onnx.inference.fsio import output_lock

from tests.test_cli import csv_text

REPO = Path(__file__).resolve().parent.parent
OPS = REPO / "examples" / "ops"
CRONTAB = OPS / "digits-score.crontab"
SERVICE = OPS / "digits-score.service"
TIMER = OPS / "digits-score.timer"
RULES = OPS / "digits-score.rules.yml"
#: The installed console script the examples name, and the folders they use.
SCRIPT = "/opt/digits-score/bin/digits-score"
FOLDERS = ("/srv/digits", "/var/lib/prometheus/node-exporter", "/var/log/digits-score")


# -- reading the files -----------------------------------------------------------------------------

def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections, each a list of (key, value) in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), raw
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and "=" in line, raw
        assert not line.endswith("\\"), "keep each setting on one line"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def setting(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def crontab() -> tuple[dict[str, str], list[tuple[list[str], str]]]:
    """The environment lines and the jobs (five time fields, command) of a crontab."""
    env: dict[str, str] = {}
    jobs = []
    for line in CRONTAB.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line)
        if match:
            env[match.group(1)] = match.group(2)
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, line
        jobs.append((fields[:5], fields[5]))
    return env, jobs


def digits_args(command: str) -> list[str]:
    """The arguments the command gives the console script."""
    words = shlex.split(command)
    start = words.index(SCRIPT) + 1
    end = next((i for i in range(start, len(words)) if words[i].endswith(";")), len(words))
    args = words[start:end + 1] if end < len(words) else words[start:]
    return [a.rstrip(";") for a in args]


# -- running them here -----------------------------------------------------------------------------

@pytest.fixture
def installed(tmp_path, digits_rows):
    """The examples' folders under tmp_path, with two inputs, and the substitutions that put
    the examples' paths there."""
    script = Path(sys.executable).parent / "digits-score"
    if not script.exists():  # not installed as a console script: a stand-in that is
        script = tmp_path / "digits-score"
        script.write_text(f"#!/bin/sh\nexec {sys.executable} -m digits_onnx.inference \"$@\"\n")
        script.chmod(0o755)
    moves = {SCRIPT: str(script)}
    for folder in FOLDERS:
        moves[folder] = str(tmp_path / folder.strip("/").replace("/", "_"))
        Path(moves[folder]).mkdir()
    incoming = Path(moves["/srv/digits"]) / "incoming"
    incoming.mkdir()
    (incoming.parent / "scored").mkdir()
    (incoming / "a.csv").write_text(csv_text(digits_rows[:30]))
    bad = csv_text(digits_rows[30:40]).splitlines()
    bad[3] = bad[3].replace(",", ",x", 1)  # one row rejected under --on-error skip
    (incoming / "b.csv").write_text("\n".join(bad) + "\n")
    return moves


def here(text: str, moves: dict[str, str]) -> str:
    for old, new in moves.items():
        text = text.replace(old, new)
    return text


def metrics_of(moves: dict[str, str]) -> dict[str, float]:
    parser = pytest.importorskip("prometheus_client.parser")
    path = Path(moves["/var/lib/prometheus/node-exporter"]) / "digits_score.prom"
    found = {}
    for family in parser.text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            found[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return found


# -- the crontab -----------------------------------------------------------------------------------

def test_the_crontab_is_one_job_cron_can_read():
    env, jobs = crontab()
    assert env["SHELL"] == "/bin/sh"
    assert env["PATH"] == "/usr/bin:/bin"
    ((schedule, command),) = jobs
    assert schedule == ["15", "2", "*", "*", "*"]
    assert "%" not in command.replace("\\%", "")  # cron turns a bare % into a newline
    assert SCRIPT in command  # by absolute path: cron's PATH has no venv


def test_the_crontab_line_logs_everything_and_reports_on_every_exit():
    _, ((_, command),) = crontab()
    assert re.search(r">>\s*/var/log/digits-score/digits-score\.log 2>&1$", command)
    args = build_parser().parse_args(digits_args(command))
    assert args.summary_json and args.metrics_file and args.out_dir
    assert args.metrics_file.startswith("/var/lib/prometheus/node-exporter/")
    assert args.metrics_file.endswith(".prom")  # what the textfile collector reads
    assert args.progress is False


def run_as_cron(command: str, env: dict[str, str], home: str) -> subprocess.CompletedProcess:
    """As cron runs a job: an empty environment but the crontab's variables and cron's own
    (HOME, LOGNAME, SHELL, PATH), the command given to $SHELL -c."""
    cron_env = {"HOME": home, "LOGNAME": "digits", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin",
                **env}
    return subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in cron_env.items()),
                           cron_env["SHELL"], "-c", command],
                          capture_output=True, text=True, timeout=300, check=False, cwd=home)


@pytest.mark.slow
def test_the_crontab_line_runs_as_cron_runs_it(installed):
    env, ((_, command),) = crontab()
    command = here(command, installed)
    home = installed["/srv/digits"]
    first = run_as_cron(command, env, home)
    assert (first.returncode, first.stdout, first.stderr) == (0, "", "")  # all in the log
    log = Path(installed["/var/log/digits-score"]) / "digits-score.log"
    lines = log.read_text().splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", lines[0])
    assert lines[-1] == "exit 0"
    assert any(line.startswith("total: 2 files (0 failed, 0 up to date), 40 rows, 1 rejected")
               for line in lines), lines
    scored = Path(installed["/srv/digits"]) / "scored"
    assert sorted(p.name for p in scored.iterdir()) == [
        ".digits-score", "a.pred.csv", "b.pred.csv", "b.rejects.csv", "last-run.json"]
    first_metrics = metrics_of(installed)
    assert first_metrics['digits_score_last_run_rows{status="rejected"}'] == 1
    assert first_metrics["digits_score_last_run_exit_code"] == 0

    second = run_as_cron(command, env, home)
    assert second.returncode == 0
    lines = log.read_text().splitlines()
    assert lines.count("exit 0") == 2
    assert "up to date: " in log.read_text()
    got = metrics_of(installed)
    assert got['digits_score_last_run_files{status="skipped"}'] == 2
    assert got['digits_score_files_total{status="scored"}'] == 2
    assert got['digits_score_files_total{status="skipped"}'] == 2
    assert got["digits_score_last_success_timestamp_seconds"] > first_metrics[
        "digits_score_last_success_timestamp_seconds"]


@pytest.mark.slow
def test_a_night_that_finds_the_last_one_still_running_exits_75(installed):
    env, ((_, command),) = crontab()
    command = here(command, installed)
    with output_lock(Path(installed["/srv/digits"]) / "scored"):
        proc = run_as_cron(command, env, installed["/srv/digits"])
    assert proc.returncode == 0  # the shell's: the echo's
    log = (Path(installed["/var/log/digits-score"]) / "digits-score.log").read_text()
    assert log.splitlines()[-1] == "exit 75"
    assert "another digits-score run is writing here" in log
    assert metrics_of(installed)["digits_score_last_run_exit_code"] == 75


# -- the systemd units -----------------------------------------------------------------------------

def test_the_service_is_a_hardened_oneshot_where_busy_is_no_failure():
    unit = read_unit(SERVICE)
    assert setting(unit, "Service", "Type") == ["oneshot"]
    assert "75" in " ".join(setting(unit, "Service", "SuccessExitStatus")).split()
    assert setting(unit, "Service", "ProtectSystem") == ["strict"]
    assert setting(unit, "Service", "KillSignal") == ["SIGINT"]  # ends as Ctrl-C does
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome", "PrivateDevices"):
        assert setting(unit, "Service", key) == ["yes"], key
    assert setting(unit, "Service", "User") and setting(unit, "Service", "User") != ["root"]
    assert not setting(unit, "Service", "Restart")  # the timer runs it again


def test_the_service_may_write_exactly_where_the_run_writes():
    unit = read_unit(SERVICE)
    (exec_start,) = setting(unit, "Service", "ExecStart")
    program, *args = shlex.split(exec_start)
    assert program == SCRIPT
    parsed = build_parser().parse_args(args)
    writable = [Path(p.lstrip("-")) for v in setting(unit, "Service", "ReadWritePaths")
                for p in v.split()]
    written = [Path(parsed.out_dir), Path(parsed.summary_json).parent,
               Path(parsed.metrics_file).parent]
    for path in written:
        assert any(path == w or w in path.parents for w in writable), path
    for path in writable:
        assert any(path == w or path in w.parents for w in written), f"{path}: not written"
    for source in parsed.inputs:
        assert not any(Path(source) == w or w in Path(source).parents for w in writable)
    assert parsed.progress is False and parsed.metrics_file.endswith(".prom")


def test_the_timer_is_persistent_and_starts_the_service():
    unit = read_unit(TIMER)
    assert setting(unit, "Timer", "Persistent") == ["true"]
    assert setting(unit, "Timer", "Unit") in ([], [SERVICE.name])
    assert setting(unit, "Install", "WantedBy") == ["timers.target"]
    (calendar,) = setting(unit, "Timer", "OnCalendar")
    if shutil.which("systemd-analyze"):
        proc = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
    # The crontab and the timer run at the same time of day.
    _, ((schedule, _),) = crontab()
    assert calendar == f"*-*-* {int(schedule[1]):02d}:{int(schedule[0]):02d}:00"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path, installed):
    """Verified with the console script and folders of this machine in place of the
    examples' (verify checks that the program exists)."""
    for unit in (SERVICE, TIMER):
        (tmp_path / unit.name).write_text(here(unit.read_text(), installed))
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / SERVICE.name),
         str(tmp_path / TIMER.name)],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # not even a warning


def test_the_service_and_the_crontab_run_the_same_command():
    _, ((_, command),) = crontab()
    (exec_start,) = setting(read_unit(SERVICE), "Service", "ExecStart")
    assert shlex.split(exec_start)[1:] == digits_args(command)


@pytest.mark.slow
def test_the_service_command_runs_as_systemd_runs_it(installed):
    """Twice, in systemd's environment for a User= service (no inherited variables), the
    second run finding everything up to date; then a busy run exits a code the unit counts
    as success."""
    unit = read_unit(SERVICE)
    (exec_start,) = setting(unit, "Service", "ExecStart")
    command = shlex.split(here(exec_start, installed))
    env = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
           f"HOME={installed['/srv/digits']}", "USER=digits", "LOGNAME=digits",
           "SHELL=/usr/sbin/nologin"]
    started = time.time()
    first = subprocess.run([*env, *command], capture_output=True, text=True, timeout=300,
                           check=False)
    assert first.returncode == 0, first.stderr
    assert first.stderr.splitlines()[-1].startswith("total: 2 files (0 failed, 0 up to date)")
    second = subprocess.run([*env, *command], capture_output=True, text=True, timeout=300,
                            check=False)
    assert second.returncode == 0, second.stderr
    assert second.stderr.splitlines()[-1].startswith("total: 2 files (0 failed, 2 up to date)")
    got = metrics_of(installed)
    assert got["digits_score_last_success_timestamp_seconds"] >= int(started)
    assert got['digits_score_files_total{status="scored"}'] == 2
    with output_lock(Path(installed["/srv/digits"]) / "scored"):
        busy = subprocess.run([*env, *command], capture_output=True, text=True, timeout=300,
                              check=False)
    success = " ".join(["0", *setting(unit, "Service", "SuccessExitStatus")]).split()
    assert busy.returncode == 75 and str(busy.returncode) in success
    assert metrics_of(installed)["digits_score_last_success_timestamp_seconds"] == got[
        "digits_score_last_success_timestamp_seconds"]


# -- the alert rules -------------------------------------------------------------------------------

def test_the_rules_name_only_metrics_the_scorer_writes():
    yaml = pytest.importorskip("yaml")
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"DigitsScoreNoRecentSuccess", "DigitsScoreManyRejects"}
    from digits_onnx.inference.metrics import render_metrics
    from digits_onnx.inference.summary import BatchSummary

    written = {line.split()[2] for line in render_metrics(
        BatchSummary(files=[]), started=0, ended=0).decode().splitlines()
        if line.startswith("# TYPE")}
    for rule in rules:
        for name in re.findall(r"\bdigits_score_[a-z_]+", rule["expr"]):
            assert name in written, (rule["alert"], name)


PROMTOOL_TEST = """\
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1h
    input_series:
      # a success at 01:00, then only failures
      - series: 'digits_score_last_success_timestamp_seconds{{instance="h"}}'
        values: '3600x40'
      - series: 'digits_score_last_run_end_timestamp_seconds{{instance="h"}}'
        values: '3600+3600x40'
      # 1000 rows, then 10 of 1000 rejected (1%: no alert), then 11 of 1000
      - series: 'digits_score_last_run_rows{{instance="h",status="scored"}}'
        values: '1000 990 989'
      - series: 'digits_score_last_run_rows{{instance="h",status="rejected"}}'
        values: '0 10 11'
    alert_rule_test:
      - eval_time: 27h
        alertname: DigitsScoreNoRecentSuccess
      - eval_time: 27h1m
        alertname: DigitsScoreNoRecentSuccess
        exp_alerts:
          - exp_labels: {{instance: h, severity: warning}}
            exp_annotations:
              summary: digits-score on h has not succeeded for 26 hours
      - eval_time: 1h
        alertname: DigitsScoreManyRejects
      - eval_time: 2h
        alertname: DigitsScoreManyRejects
        exp_alerts:
          - exp_labels: {{instance: h, severity: warning}}
            exp_annotations:
              summary: digits-score on h rejected 1.1% of the last run's rows
      - eval_time: 26h
        alertname: DigitsScoreMetricsMissing
  - interval: 1h
    input_series:
      - series: 'up{{job="node"}}'
        values: '1x30'
    alert_rule_test:
      - eval_time: 25h
        alertname: DigitsScoreMetricsMissing
      - eval_time: 27h
        alertname: DigitsScoreMetricsMissing
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations:
              summary: no digits-score metrics for 26 hours
"""


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_checks_the_rules_and_they_fire_when_meant_to(tmp_path):
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    spec = tmp_path / "rules_test.yml"
    spec.write_text(PROMTOOL_TEST.format(rules=RULES))
    proc = subprocess.run(["promtool", "test", "rules", str(spec)], capture_output=True,
                          text=True, timeout=60, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nothing_in_the_examples_depends_on_this_checkout():
    for path in (CRONTAB, SERVICE, TIMER, RULES):
        text = path.read_text()
        assert str(REPO) not in text and "/tmp/" not in text, path
        assert os.access(path, os.R_OK)
