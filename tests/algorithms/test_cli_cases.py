"""The command line as a careless or hostile user meets it: every case, its exit status and its one line.

A user error exits 2 with one line on stderr (no traceback) before anything is written; the table below
is the list of cases the closing note of issue 18 cites. A few real processes check what only a process
shows: ``python -m fedmodel``, and the progress bar only on a terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fedmodel import __version__, cli, train_cli
from fedmodel._run_outputs import COLUMNS

RUN = ["--clients", "3", "--rounds", "1", "--local-epochs", "1", "--no-progress"]


def _fifo(name: str) -> Callable[[Path], None]:
    return lambda out: (out.mkdir(exist_ok=True), os.mkfifo(out / name))[-1]


def _folder(name: str) -> Callable[[Path], None]:
    return lambda out: (out / name).mkdir(parents=True)


def _file(out: Path) -> None:
    out.write_text("not a folder")


def _nothing(out: Path) -> None:
    pass


_HEADER = ",".join(COLUMNS) + "\n"


def _written(name: str, text: str) -> Callable[[Path], None]:
    return lambda out: (out.mkdir(exist_ok=True), (out / name).write_text(text))[-1]


def _trained(*argv: str) -> Callable[[Path], None]:
    """A run with ``argv`` already checkpointed in OUT (what a later --resume meets)."""
    return lambda out: train_cli.main([*RUN, "--out", str(out), "--checkpoint", *argv]) and None


DP = ["--dp-clip", "1", "--dp-noise-multiplier", "1"]


# (id, arguments after `fedmodel train` (OUT: the output folder), set-up of OUT, exit status, in stderr)
CASES: list[tuple[str, list[str], Callable[[Path], None], int, str]] = [
    ("rounds -3", ["--rounds", "-3"], _nothing, 2, "--rounds: expected an integer >= 1, got '-3'"),
    ("rounds 0", ["--rounds", "0"], _nothing, 2, "--rounds: expected an integer >= 1, got '0'"),
    ("rounds 1.5", ["--rounds", "1.5"], _nothing, 2, "--rounds: expected an integer >= 1, got '1.5'"),
    ("rounds x", ["--rounds", "x"], _nothing, 2, "--rounds: expected an integer >= 1, got 'x'"),
    ("clients 0", ["--clients", "0"], _nothing, 2, "--clients: expected an integer >= 1"),
    ("clients 100000", ["--clients", "100000"], _nothing, 2, "num_clients must be an int between 1 and the 1438"),
    ("clients-per-round 0", ["--clients-per-round", "0"], _nothing, 2, "--clients-per-round: expected an integer >= 1"),
    ("clients-per-round > clients", ["--clients-per-round", "4"], _nothing, 2, "--clients-per-round 4 exceeds"),
    ("batch-size 0", ["--batch-size", "0"], _nothing, 2, "--batch-size: expected an integer >= 1"),
    ("local-epochs 0", ["--local-epochs", "0"], _nothing, 2, "--local-epochs: expected an integer >= 1"),
    ("client-timeout 0", ["--client-timeout", "0"], _nothing, 2, "--client-timeout: expected a number in (0, 604800]"),
    ("client-timeout inf", ["--client-timeout", "inf"], _nothing, 2, "--client-timeout: expected a number in"),
    ("client-timeout 25 days", ["--client-timeout", "2200000"], _nothing, 2, "--client-timeout: expected a number in"),
    ("client-timeout nan", ["--client-timeout", "nan"], _nothing, 2, "--client-timeout: expected a number in"),
    ("lr inf", ["--lr", "inf"], _nothing, 2, "--lr: expected a finite number > 0, got 'inf'"),
    ("lr nan", ["--lr", "nan"], _nothing, 2, "--lr: expected a finite number > 0, got 'nan'"),
    ("lr 1e400", ["--lr", "1e400"], _nothing, 2, "--lr: expected a finite number > 0, got '1e400'"),
    ("lr 0", ["--lr", "0"], _nothing, 2, "--lr: expected a finite number > 0, got '0'"),
    ("lr -0.1", ["--lr", "-0.1"], _nothing, 2, "--lr: expected a finite number > 0"),
    ("server-lr nan", ["--server-lr", "nan"], _nothing, 2, "--server-lr: expected a finite number > 0"),
    ("server-momentum 1", ["--server-momentum", "1"], _nothing, 2, "--server-momentum: expected a number in [0, 1)"),
    ("mu 0", ["--mu", "0"], _nothing, 2, "--mu: expected a finite number > 0"),
    ("tau -1", ["--tau", "-1"], _nothing, 2, "--tau: expected a finite number > 0"),
    ("alpha -1", ["--alpha", "-1"], _nothing, 2, "--alpha: expected a finite number >= 0"),
    ("alpha nan", ["--alpha", "nan"], _nothing, 2, "--alpha: expected a finite number >= 0"),
    ("test-fraction 1", ["--test-fraction", "1"], _nothing, 2, "--test-fraction: expected a number in (0, 1)"),
    ("seed -1", ["--seed", "-1"], _nothing, 2, "--seed: expected an integer in [0, 2**63), got '-1'"),
    ("seed 2**63", ["--seed", str(2**63)], _nothing, 2, "--seed: expected an integer in [0, 2**63)"),
    ("backend mxnet", ["--backend", "mxnet"], _nothing, 2, "--backend: invalid choice: 'mxnet'"),
    ("algorithm sgd", ["--algorithm", "sgd"], _nothing, 2, "--algorithm: invalid choice: 'sgd'"),
    ("unknown option", ["--bogus"], _nothing, 2, "unrecognized arguments: --bogus"),
    ("out is a file", [], _file, 2, "exists and is not a folder"),
    ("out under a file", ["--out", "OUT/sub"], _file, 2, "cannot be written: Not a directory"),
    ("out not writable", ["--out", "/proc/self"], _nothing, 2, "--out /proc/self cannot be written"),
    ("metrics.csv a FIFO", [], _fifo("metrics.csv"), 2, "metrics.csv exists and is not a regular file"),
    ("curves.png a folder", [], _folder("curves.png"), 2, "curves.png exists and is not a regular file"),
    ("weights a FIFO", [], _fifo("weights-numpy-fedavg.safetensors"), 2, "is not a regular file"),
    ("checkpoint a FIFO", ["--resume"], _fifo("checkpoint-numpy-fedavg.safetensors"), 2, "is not a regular file"),
    (
        "resume, checkpoint not one",
        ["--resume"],
        _written("checkpoint-numpy-fedavg.safetensors", "garbage"),
        2,
        "--resume: ",
    ),
    ("resume, foreign metrics.csv", ["--resume"], _written("metrics.csv", "a,b\n1,2\n"), 2, "is not a metrics.csv"),
    (  # before: trained two rounds, then the plot failed on 'abc'
        "resume, a metrics.csv value that is no number",
        ["--resume"],
        _written("metrics.csv", _HEADER + "numpy/fedavg,1,abc,1,1,1,6,0,0.1,\n"),
        2,
        "metrics.csv line 2: train_loss is 'abc', not a number",
    ),
    (  # before: a ValueError traceback from int('²')
        "resume, a metrics.csv round that is no plain number",
        ["--resume"],
        _written("metrics.csv", _HEADER + "numpy/fedavg,\u00b2,1,1,1,1,6,0,0.1,\n"),
        2,
        "metrics.csv line 2: round is '\u00b2', not a round number",
    ),
    (  # before: _csv.Error: field larger than field limit
        "resume, a metrics.csv field past csv's limit",
        ["--resume"],
        _written("metrics.csv", _HEADER + "numpy/fedavg,1," + "9" * 200_000 + ",1,1,1,6,0,0.1,\n"),
        2,
        "cannot be read as a CSV",
    ),
    ("resume, no checkpoint", ["--resume"], _nothing, 0, ""),
    ("out empty", ["--out", ""], _nothing, 2, "--out: expected a folder, got an empty path"),
    ("workers -1", ["--workers", "-1"], _nothing, 2, "--workers: expected an integer >= 0, got '-1'"),
    ("workers 1.5", ["--workers", "1.5"], _nothing, 2, "--workers: expected an integer >= 0, got '1.5'"),
    ("executor threads", ["--executor", "threads"], _nothing, 2, "--executor: invalid choice: 'threads'"),
    ("executor ray, no workers", ["--executor", "ray"], _nothing, 2, "--executor ray runs the clients in Ray actors"),
    ("sampling-rate 0", ["--sampling-rate", "0"], _nothing, 2, "--sampling-rate: expected a number in (0, 1], got '0'"),
    ("sampling-rate 1.5", ["--sampling-rate", "1.5"], _nothing, 2, "--sampling-rate: expected a number in (0, 1]"),
    ("sampling-rate nan", ["--sampling-rate", "nan"], _nothing, 2, "--sampling-rate: expected a number in (0, 1]"),
    (
        "sampling-rate and clients-per-round",
        ["--sampling-rate", "0.5", "--clients-per-round", "2"],
        _nothing,
        2,
        "--sampling-rate (Poisson sampling) and --clients-per-round (fixed size) exclude each other",
    ),
    ("dp-clip 0", ["--dp-clip", "0"], _nothing, 2, "--dp-clip: expected a finite number > 0, got '0'"),
    ("dp-clip inf", ["--dp-clip", "inf"], _nothing, 2, "--dp-clip: expected a finite number > 0"),
    ("dp-clip 1e101", ["--dp-clip", "1e101", "--dp-noise-multiplier", "1"], _nothing, 2, "--dp-clip: expected at most"),
    ("dp-clip, no noise", ["--dp-clip", "1"], _nothing, 2, "--dp-clip needs --dp-noise-multiplier or --dp-target"),
    (
        "dp-noise-multiplier -1",
        ["--dp-noise-multiplier", "-1"],
        _nothing,
        2,
        "--dp-noise-multiplier: expected a finite",
    ),
    (
        "dp-noise-multiplier, no clip",
        ["--dp-noise-multiplier", "1"],
        _nothing,
        2,
        "--dp-noise-multiplier needs --dp-clip",
    ),
    ("dp-adaptive-clip, no clip", ["--dp-adaptive-clip"], _nothing, 2, "--dp-adaptive-clip needs --dp-clip"),
    ("dp-secure-noise, no clip", ["--dp-secure-noise"], _nothing, 2, "--dp-secure-noise needs --dp-clip"),
    (
        "dp-target-epsilon 0",
        ["--dp-target-epsilon", "0"],
        _nothing,
        2,
        "--dp-target-epsilon: expected a finite number > 0",
    ),
    ("dp-target-epsilon nan", ["--dp-target-epsilon", "nan"], _nothing, 2, "--dp-target-epsilon: expected a finite"),
    ("dp-target-epsilon, no clip", ["--dp-target-epsilon", "5"], _nothing, 2, "--dp-target-epsilon needs --dp-clip"),
    (
        "dp-target-epsilon below one round",
        [*DP, "--dp-target-epsilon", "0.1"],
        _nothing,
        2,
        "--dp-target-epsilon 0.1: not one round fits, one round with --dp-noise-multiplier 1.0 spends epsilon",
    ),
    ("dp-delta 0", ["--dp-delta", "0"], _nothing, 2, "--dp-delta: expected a number in (0, 1), got '0'"),
    ("dp-delta 1", ["--dp-delta", "1"], _nothing, 2, "--dp-delta: expected a number in (0, 1)"),
    ("dp-delta >= 1/clients", [*DP, "--dp-delta", "0.4"], _nothing, 2, "--dp-delta 0.4 must be below 1/--clients"),
    (
        "dp-adaptive-clip, count noise too small",
        [*DP, "--dp-adaptive-clip"],  # 3 clients: the count's noise 0.05 * 3 cannot carry its share of z = 1
        _nothing,
        2,
        "--dp-adaptive-clip: count_stddev = 0.15 is too small for noise_multiplier = 1:",
    ),
    (
        "resume, other DP options",
        ["--resume", "--dp-clip", "1", "--dp-noise-multiplier", "2"],
        _trained(*DP),
        2,
        "--dp-noise-multiplier 2.0 (the checkpoint's: 1.0)",
    ),
    ("resume, DP dropped", ["--resume"], _trained(*DP), 2, "--dp-clip missing (the checkpoint's: 1.0)"),
    ("a valid DP run", [*DP, "--dp-delta", "0.01"], _nothing, 0, ""),
    (
        "a valid DP run, calibrated, Poisson, secure noise",
        ["--dp-clip", "1", "--dp-target-epsilon", "5", "--sampling-rate", "0.7", "--dp-secure-noise"],
        _nothing,
        0,
        "",
    ),
    ("data unknown", ["--data", "mnist"], _nothing, 2, "data source 'mnist' (the --data option): unknown source"),
    ("data synthetic:1", ["--data", "synthetic:1"], _nothing, 2, "synthetic needs ALPHA,BETA"),
    ("data-option without =", ["--data-option", "task"], _nothing, 2, "--data-option: expected KEY=VALUE"),
    ("a valid synthetic run", ["--data", "synthetic:1,1"], _nothing, 0, ""),
    ("a valid run", [], _nothing, 0, ""),
    ("--help", ["--help"], _nothing, 0, ""),
    ("--version", ["--version"], _nothing, 0, ""),
]


@pytest.mark.parametrize(("argv", "setup", "status", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_case_exits_with_its_status_and_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    setup: Callable[[Path], None],
    status: int,
    message: str,
) -> None:
    out = tmp_path / "out"
    setup(out)
    argv = [a.replace("OUT", str(out)) for a in argv]
    before = sorted(os.listdir(out)) if out.is_dir() else None
    assert train_cli.main([*RUN, "--out", str(out), *argv]) == status
    err = capsys.readouterr().err
    if status == 2:
        assert err.startswith("fedmodel train: error: ") and err.count("\n") == 1, err
        assert message in err
        assert (sorted(os.listdir(out)) if out.is_dir() else None) == before  # nothing written
    else:
        assert err == ""


def test_the_table_covers_every_option_of_fedmodel_train() -> None:
    options = {o for a in train_cli._parser()._actions for o in a.option_strings if o.startswith("--")}
    tried = {a for c in CASES for a in c[1] if a.startswith("--")}
    assert options - tried <= {"--checkpoint", "--no-progress", "--help"}  # flags: no value to get wrong


def test_every_option_has_help_that_shows_its_default() -> None:
    parser = train_cli._parser()
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if action.option_strings[-1] in ("--help", "--version"):
            continue
        assert action.help, action.option_strings
        assert f"{action.help} (default: {action.default})" in text, action.option_strings


@pytest.mark.parametrize(
    ("argv", "status", "stream", "text"),
    [
        ([], 2, "err", "fedmodel: error: a command is required"),
        (["trian"], 2, "err", "fedmodel: error: unknown command 'trian'"),
        (["--help"], 0, "out", "commands:"),
        (["--version"], 0, "out", f"fedmodel {__version__}\n"),
        (["train", "--version"], 0, "out", f"fedmodel {__version__}\n"),
        (["train", "--rounds", "0"], 2, "err", "fedmodel train: error: argument --rounds"),
    ],
)
def test_the_fedmodel_command(
    capsys: pytest.CaptureFixture[str], argv: list[str], status: int, stream: str, text: str
) -> None:
    assert cli.main(argv) == status
    assert text in getattr(capsys.readouterr(), stream)


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_python_dash_m_fedmodel_shows_its_version_and_a_one_line_usage_error() -> None:
    assert _python("-m", "fedmodel", "--version").stdout == f"fedmodel {__version__}\n"
    bad = _python("-m", "fedmodel", "train", "--lr", "nan")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == (
        "fedmodel train: error: argument --lr: expected a finite number > 0, got 'nan' (see 'fedmodel train --help')\n"
    )


def test_with_stderr_piped_there_is_no_progress_bar_and_the_table_is_whole(tmp_path: Path) -> None:
    run = _python("-m", "fedmodel", "train", "--clients", "3", "--rounds", "3", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    table = [line.split()[0] for line in lines[lines.index(next(x for x in lines if x.startswith("round"))) + 1 :][:3]]
    assert table == ["1", "2", "3"]


def test_with_stderr_on_a_terminal_the_progress_bar_shows(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 0x0 terminal hides tqdm
    seen: list[bytes] = []

    def read_terminal() -> None:  # while the child runs: a closed terminal may drop what was not read
        with contextlib.suppress(OSError):  # EIO once the child's side is closed
            while chunk := os.read(leader, 4096):
                seen.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        argv = [sys.executable, "-m", "fedmodel", "train", "--clients", "3", "--rounds", "2", "--out", str(tmp_path)]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, env=env) as child:
            os.close(follower)
            stdout, _ = child.communicate(timeout=300)
        reader.join(10)
    finally:
        os.close(leader)
    assert child.returncode == 0
    assert b"fedavg" in b"".join(seen) and b"2/2" in b"".join(seen)  # tqdm's bar: its description and count
    assert b"train loss" in stdout and b"2/2" not in stdout


def test_ctrl_c_while_the_data_loads_exits_130_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Before, an interrupt before the first round (data loading, backend imports) printed a whole traceback."""

    def interrupted(args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cli, "_prepare", interrupted)
    assert train_cli.main([*RUN, "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err == "\nfedmodel train: interrupted before the first round\n"
