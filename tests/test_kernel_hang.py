"""The stall guard on the kernel waits of nbval and nbclient (conftest.py): a kernel that sits idle
without starting a cell must cost seconds, not the whole cell timeout (600 s before), and the
guard must never hide a real failure (a busy or frozen kernel is not resent; a second stall fails).

Each stall is simulated by losing requests on their way to the kernel (``RunningKernel._transmit``
for nbval, the session's send for nbclient), so the kernel really is idle and never sees the cell,
as in the hang seen in `make test` (kernel idle in epoll, the client waiting on the shell channel).
Also: a cell that floods IOPub keeps its 'idle' status (plain nbval loses it).
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from queue import Empty

import nbformat
import pytest

from nbval.kernel import CURRENT_ENV_KERNEL_NAME, RunningKernel

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.simulated_kernel_stalls  # reported as warnings here, not as real stalls
FAST = {"stall_seconds": 1.0, "probe_seconds": 5.0, "settle_seconds": 0.3, "reply_grace_seconds": 2.0}


def _fast(monkeypatch):
    for name, value in FAST.items():
        monkeypatch.setattr(RunningKernel, name, value)


def _lose(kernel, how_many):
    """Make the next `how_many` execute_requests vanish on their way to the kernel."""
    sent = type(kernel)._transmit
    left = [how_many]

    def transmit(msg, kc):
        if msg["header"]["msg_type"] == "execute_request" and left[0] > 0:
            left[0] -= 1
            return
        sent(kernel, msg, kc)
    kernel._transmit = transmit


def _outputs(kernel, msg_id):
    """nbval's read after the reply: IOPub until 'idle' for msg_id; the stream text."""
    text = []
    while True:
        msg = kernel.get_message("iopub", timeout=5)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(text)


@pytest.fixture(scope="module")
def kernel():
    k = RunningKernel(CURRENT_ENV_KERNEL_NAME, cwd=str(ROOT))
    yield k
    if k.is_alive():
        k.stop()


def test_the_guard_is_installed():
    assert getattr(RunningKernel, "_mmcourse_stall_guard", False), "conftest.py did not patch nbval"


def test_lost_request_is_sent_again_and_the_cell_completes(kernel, monkeypatch):
    _fast(monkeypatch)
    _lose(kernel, 1)
    t0 = time.monotonic()
    msg_id = kernel.execute_cell_input("x = 41 + 1\nprint(x)", allow_stdin=False)
    with pytest.warns(UserWarning, match="sent it once more"):
        kernel.await_reply(msg_id, timeout=600)
    assert time.monotonic() - t0 < 20, "the stall should cost seconds, not the 600 s cell timeout"
    assert _outputs(kernel, msg_id) == "42\n"
    # the kernel state survived (the cell ran exactly once) and the next cell runs normally
    msg_id = kernel.execute_cell_input("x += 1\nprint(x)", allow_stdin=False)
    kernel.await_reply(msg_id, timeout=60)
    assert _outputs(kernel, msg_id) == "43\n"


def test_a_busy_cell_is_never_sent_again(kernel, monkeypatch, recwarn):
    """Longer than the stall window, but running ('busy' came): the guard stays out of it."""
    _fast(monkeypatch)
    msg_id = kernel.execute_cell_input("import time\ntime.sleep(2)\nprint('slept')", allow_stdin=False)
    kernel.await_reply(msg_id, timeout=60)
    assert _outputs(kernel, msg_id) == "slept\n"
    assert not [w for w in recwarn if "stall" in type(w.message).__name__.lower()]


def test_an_iopub_flood_keeps_every_message_and_the_idle_status(kernel):
    """20,000 flushed prints overflow zmq's high-water marks (1,000 a side) if nobody reads IOPub
    while waiting for the reply, as plain nbval does: messages and the final 'idle' are dropped and
    nbval fails after 5 s "waiting for output" (3 of 3 runs here). The guard reads IOPub while it
    waits, so nothing is lost."""
    msg_id = kernel.execute_cell_input("for i in range(20_000):\n    print(i, flush=True)", allow_stdin=False)
    kernel.await_reply(msg_id, timeout=120)
    lines = _outputs(kernel, msg_id).split()
    assert lines[-1] == "19999" and len(lines) == 20_000


def test_a_kernel_that_does_not_answer_is_left_to_the_cell_timeout(monkeypatch):
    """Not idle (here: frozen with SIGSTOP): no resend, and the cell timeout still applies."""
    _fast(monkeypatch)
    monkeypatch.setattr(RunningKernel, "probe_seconds", 2.0)
    k = RunningKernel(CURRENT_ENV_KERNEL_NAME, cwd=str(ROOT))
    pid = k.km.provisioner.process.pid
    try:
        os.kill(pid, signal.SIGSTOP)
        msg_id = k.execute_cell_input("print('hi')", allow_stdin=False)
        t0 = time.monotonic()
        with pytest.warns(UserWarning, match="not idle, so no resend"), pytest.raises(Empty):
            k.await_reply(msg_id, timeout=4)
        assert 4 <= time.monotonic() - t0 < 8
        assert k._guard["requests"][msg_id]["resent"] is False
    finally:
        os.kill(pid, signal.SIGCONT)
        k.stop()


def test_a_second_stall_fails_the_cell_fast(monkeypatch):
    _fast(monkeypatch)
    k = RunningKernel(CURRENT_ENV_KERNEL_NAME, cwd=str(ROOT))
    _lose(k, 2)
    msg_id = k.execute_cell_input("print('never')", allow_stdin=False)
    t0 = time.monotonic()
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="kernel stall"):
        k.await_reply(msg_id, timeout=600)
    assert time.monotonic() - t0 < 20
    assert not k.is_alive(), "a kernel that stalled twice is stopped (the next cells fail fast too)"


NOTEBOOK_CELLS = ["a = 20", "print(a + 1)", "b = a * 2\nprint(b)"]
LOSE_SECOND_CELL = '''
from nbval.kernel import RunningKernel as _RK
for _k, _v in {fast!r}.items():
    setattr(_RK, _k, _v)
_send, _n = _RK._transmit, [0]
def _lossy(self, msg, kc):
    if msg["header"]["msg_type"] == "execute_request":
        _n[0] += 1
        if _n[0] == 2:
            return
    _send(self, msg, kc)
_RK._transmit = _lossy
'''


def test_nbval_run_with_a_lost_cell_passes_and_says_so(tmp_path):
    """End to end: nbval on a notebook whose 2nd cell is lost once passes in seconds, and the run
    reports the stall (the "kernel stalls" section and a warning)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    nbformat.write(nb, str(tmp_path / "lost.ipynb"))
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text()
                                          + textwrap.dedent(LOSE_SECOND_CELL.format(fast=FAST)))
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                          "--nbval-cell-timeout=600", "-p", "no:cacheprovider", "lost.ipynb"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - t0 < 30
    out = run.stdout
    assert run.returncode == 0, out[-3000:]
    assert re.search(r"3 passed, \d+ warnings? in", out) and "KernelStallWarning" in out, out[-3000:]
    assert "kernel stalls" in out and "lost.ipynb::Cell 1: the idle kernel had not started" in out, out[-3000:]


def _nbclient_losing(monkeypatch, how_many):
    """NotebookClient (tests/test_rerun.py) whose next `how_many` execute_requests vanish."""
    from nbclient.client import NotebookClient
    for name, value in {"mmcourse_stall_seconds": FAST["stall_seconds"], "mmcourse_probe_seconds": 5.0,
                        "mmcourse_settle_seconds": FAST["settle_seconds"]}.items():
        monkeypatch.setattr(NotebookClient, name, value)
    start, left = NotebookClient.async_start_new_kernel_client, [how_many]

    async def start_losing(self):
        kc = await start(self)
        session_send = kc.session.send  # below the channel's send, where the guard records requests

        def lossy(stream, msg, *args, **kwargs):
            if isinstance(msg, dict) and msg["header"]["msg_type"] == "execute_request" and left[0] > 0:
                left[0] -= 1
                return msg
            return session_send(stream, msg, *args, **kwargs)
        kc.session.send = lossy
        return kc
    monkeypatch.setattr(NotebookClient, "async_start_new_kernel_client", start_losing)
    return NotebookClient


@pytest.mark.parametrize("lost", [1, 2])
def test_nbclient_lost_request_is_sent_again_or_fails_fast(monkeypatch, lost):
    NotebookClient = _nbclient_losing(monkeypatch, lost)
    from nbclient.exceptions import CellTimeoutError
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS[:2]])
    client = NotebookClient(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    t0 = time.monotonic()
    with pytest.warns(UserWarning) as warned:
        if lost == 1:
            client.execute()
        else:
            with pytest.raises(CellTimeoutError, match="kernel stall"):
                client.execute()
    assert time.monotonic() - t0 < 20, "the stall should cost seconds, not the cell timeout"
    assert any("sent it once more" in str(w.message) for w in warned)
    if lost == 1:
        assert nb.cells[1].outputs[0]["text"] == "21\n"
