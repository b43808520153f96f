"""Test-session set-up shared by the unit tests and nbval.

Jupyter, IPython and matplotlib write into ``~`` by default; point them at one temp dir so the
suite leaves the user's home alone and runs the same on every machine.

It also gives nbval a bounded, stall-aware wait for kernel replies (below, and
tests/test_kernel_hang.py), and bounds nbclient's per-cell timeout in quick mode.
"""

import os
import tempfile
import time
import warnings
from collections import deque
from queue import Empty

import pytest

_TMP = tempfile.mkdtemp(prefix="mmcourse-test-")
for _var, _sub in [("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                   ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                   ("MPLCONFIGDIR", "matplotlib")]:
    os.environ.setdefault(_var, os.path.join(_TMP, _sub))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_NOTEBOOK_SECONDS: dict[str, float] = {}
_STALLS: dict[tuple[str, str], None] = {}  # (nodeid, what happened), in order, no repeats


def pytest_runtest_logreport(report):
    """Add up each notebook's cell times (nbval makes one test item per cell); collect the kernel
    stalls the workers reported (they travel in ``user_properties``, so they survive xdist)."""
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _NOTEBOOK_SECONDS[path] = _NOTEBOOK_SECONDS.get(path, 0.0) + report.duration
    for key, text in getattr(report, "user_properties", ()):
        if key == "kernel_stall":
            _STALLS[(report.nodeid, text)] = None


def pytest_terminal_summary(terminalreporter):
    if _NOTEBOOK_SECONDS:
        terminalreporter.section("notebook run times (sum of cell times; kernel start not included)")
        for path, seconds in sorted(_NOTEBOOK_SECONDS.items()):
            flag = "" if seconds <= 90 else "   <-- over the 90 s budget"
            terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")
    if _STALLS:
        terminalreporter.section("kernel stalls (an idle kernel that did not start a request; see conftest.py)")
        for nodeid, text in _STALLS:
            terminalreporter.write_line(f"{nodeid}: {text}")


# ------------------------------------------------------------------------------------------------
# A bounded, stall-aware wait for nbval's kernel replies (tests/test_kernel_hang.py).
#
# nbval (0.11) sends a cell, then blocks on the shell channel for its execute_reply for the whole
# --nbval-cell-timeout, reading nothing on IOPub meanwhile (plugin.py runtest, kernel.py
# await_reply). Two ways that goes wrong:
#  * a request the kernel never starts (ipykernel 7's lost ROUTER wake-up, ipython/ipykernel#1554;
#    a rarer unexplained case with 6.31): the kernel sits idle in epoll and answers any second
#    client, while nbval waits the whole cell timeout;
#  * a cell that publishes more than ~2,000 IOPub messages while nbval is blocked on the shell
#    overflows the PUB/SUB high-water marks (1,000 each side): zmq drops the overflow, the final
#    'idle' status with it, and nbval fails "Timeout of 5 seconds exceeded waiting for output".
# So this wait reads IOPub into a buffer while it waits (nothing is dropped; nbval reads the buffer
# afterwards) and watches the request. Once the kernel has published 'busy' for it, the cell is
# running and only the cell timeout applies. If no 'busy' came within STALL_SECONDS, it asks the
# kernel for kernel_info over a fresh connection (a new connection also wakes a lost ROUTER
# wake-up). A kernel busy with the request cannot answer that (shell requests run one at a time),
# so if it answers and then still does not start the request within SETTLE_SECONDS, it is idle and
# never got the request: the request (same msg_id) is sent once more over the fresh connection.
# If that stalls too, the kernel is stopped and the cell fails at once with "kernel stall".
# Every event is reported: a KernelStallWarning on the test and the "kernel stalls" section.
# ------------------------------------------------------------------------------------------------
STALL_SECONDS = 30.0        # no 'busy' for the request this long: probe the kernel
PROBE_SECONDS = 10.0        # how long the probe waits for kernel_info over a fresh connection
SETTLE_SECONDS = 3.0        # after the probe answered: time for a woken request to show 'busy'
REPLY_GRACE_SECONDS = 10.0  # 'idle' came for the request but no execute_reply: use the IOPub outputs

_CURRENT_ITEM = None


class KernelStallWarning(UserWarning):
    """A kernel did not start a request in time; what was done about it is the message."""


def report_stall(text: str) -> None:
    """Record a stall on the running test (summary section) and warn (warnings summary)."""
    item = _CURRENT_ITEM
    if item is not None:
        if item.get_closest_marker("simulated_kernel_stalls") is None:
            item.user_properties.append(("kernel_stall", text))
    else:
        _STALLS[("(outside a test)", text)] = None
    warnings.warn(KernelStallWarning(text), stacklevel=3)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Remember the running test, so a stall is reported on it."""
    global _CURRENT_ITEM
    _CURRENT_ITEM = item
    try:
        return (yield)
    finally:
        _CURRENT_ITEM = None


def _install_nbval_stall_guard():  # noqa: C901 (one closure family, kept together)
    if os.environ.get("MMCOURSE_NBVAL_STALL_GUARD", "1") == "0":  # plain nbval, for comparison
        return
    try:
        import zmq
        from nbval.kernel import RunningKernel
    except ImportError:
        return
    if getattr(RunningKernel, "_mmcourse_stall_guard", False):
        return
    original_stop = RunningKernel.stop

    def guard(self):
        if "_guard" not in self.__dict__:
            self._guard = {"iopub": deque(), "requests": {}, "shell_kc": None}
        return self._guard

    def shell_client(self):
        return guard(self)["shell_kc"] or self.kc

    def transmit(self, msg, kc):
        """Send one request on a shell channel (tests replace this to lose a request)."""
        kc.shell_channel.send(msg)

    def track(self, msg):
        req = guard(self)["requests"].get(msg["parent_header"].get("msg_id"))
        if req is not None and msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "busy":
                req["busy"] += 1
            elif msg["content"]["execution_state"] == "idle":
                req["idle"] = time.monotonic()
        return msg

    def drain_iopub(self):
        """Move every IOPub message already here into the buffer that nbval reads."""
        channel, buf = self.kc.iopub_channel, guard(self)["iopub"]
        while channel.msg_ready():
            buf.append(track(self, channel.get_msg(timeout=0)))

    def execute_cell_input(self, cell_input, allow_stdin=None):
        # what KernelClient.execute sends (nbval's call), keeping the message for a resend
        content = {"code": cell_input, "silent": False, "store_history": False,
                   "user_expressions": {}, "stop_on_error": False,
                   "allow_stdin": self.kc.allow_stdin if allow_stdin is None else allow_stdin}
        msg = self.kc.session.msg("execute_request", content)
        msg_id = msg["header"]["msg_id"]
        guard(self)["requests"][msg_id] = {"msg": msg, "sent": time.monotonic(), "busy": 0,
                                           "idle": None, "probed": False, "resent": False}
        self._transmit(msg, shell_client(self))
        return msg_id

    def next_shell_msg(self, wait):
        """The next shell message within `wait` seconds (or None), draining IOPub as it arrives:
        a cell that floods IOPub must not overflow zmq's high-water marks while we wait."""
        shell = shell_client(self).shell_channel
        poller = zmq.Poller()
        poller.register(shell.socket, zmq.POLLIN)
        poller.register(self.kc.iopub_channel.socket, zmq.POLLIN)
        end = time.monotonic() + wait
        while True:
            ready = dict(poller.poll(max(0, int((end - time.monotonic()) * 1000))))
            drain_iopub(self)
            if shell.socket in ready:
                return shell.get_msg(timeout=0)
            if time.monotonic() >= end:
                return None

    def get_message(self, stream, timeout=None):
        if stream == "iopub":
            buf = guard(self)["iopub"]
            if not buf:
                drain_iopub(self)
            if buf:
                return buf.popleft()
            return track(self, self.kc.get_iopub_msg(timeout=timeout))
        if stream == "shell":
            return shell_client(self).get_shell_msg(timeout=timeout)
        raise ValueError(f"Invalid stream specified: {stream!r}")

    def probe(self):
        """kernel_info over a fresh connection (new session, so a new zmq identity).
        Returns (client, seconds it took to answer, or None if it did not)."""
        from jupyter_client import BlockingKernelClient
        client = BlockingKernelClient()
        client.load_connection_info(self.km.get_connection_info())
        client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        t0 = time.monotonic()
        try:
            client.kernel_info(reply=True, timeout=self.probe_seconds)
        except Exception:  # TimeoutError (jupyter_client 8) or Empty
            return client, None
        return client, time.monotonic() - t0

    def handle_stall(self, msg_id, req, waited, timeout):
        """No 'busy' for the request for stall_seconds. Returns True if its reply came meanwhile."""
        if req["resent"]:
            report_stall(f"the kernel did not start the request after it was sent again; {waited:.0f} s "
                         f"without a start, so the cell fails now (cell timeout {timeout or 0:g} s)")
            try:
                self.stop()
            finally:
                raise RuntimeError(f"kernel stall: the idle kernel did not start the cell, sent twice, "
                                   f"in {waited:.0f} s (see the 'kernel stalls' section)")
        req["probed"] = True
        client, answered = probe(self)
        if answered is None:
            client.stop_channels()
            report_stall(f"no start for {waited:.0f} s and no kernel_info answer on a fresh connection in "
                         f"{self.probe_seconds:g} s: the kernel is not idle, so no resend; the cell "
                         "timeout decides")
            return False
        settle_end = time.monotonic() + self.settle_seconds
        while time.monotonic() < settle_end and not req["busy"]:
            msg = next_shell_msg(self, 0.2)
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                client.stop_channels()
                report_stall(f"the request, stalled {waited:.0f} s, was answered once a second client connected")
                return True
        if req["busy"]:
            client.stop_channels()
            report_stall(f"the kernel started the request, stalled {waited:.0f} s, once a second client "
                         "connected (no resend)")
            return False
        g = guard(self)
        if g["shell_kc"] is not None:
            g["shell_kc"].stop_channels()
        g["shell_kc"] = client
        req["resent"], req["sent"] = True, time.monotonic()
        self._transmit(req["msg"], client)
        report_stall(f"the idle kernel had not started the request in {waited:.0f} s (it answered kernel_info "
                     f"on a fresh connection in {answered:.1f} s): sent it once more on that connection")
        return False

    def await_reply(self, msg_id, timeout=None):
        """nbval's await_reply (shell reply for msg_id within timeout, else Empty), reading IOPub
        meanwhile and handling a request that the kernel does not start (see above)."""
        req = guard(self)["requests"].get(msg_id)
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise Empty
            wait = 0.5 if deadline is None else min(0.5, deadline - now)
            msg = next_shell_msg(self, wait)
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                if msg["content"]["status"] == "aborted":
                    raise RuntimeError("Kernel aborted execution request")
                if req is not None and req["busy"] > 1:
                    report_stall("the resent request ran twice (two 'busy' for it)")
                return
            if req is None:
                continue
            now = time.monotonic()
            if req["idle"] is not None and now - req["idle"] > self.reply_grace_seconds:
                report_stall(f"the kernel finished the request ('idle' on IOPub) but no execute_reply came "
                             f"in {self.reply_grace_seconds:g} s; the cell's outputs are taken from IOPub")
                return
            if req["busy"] or now - req["sent"] < self.stall_seconds or (req["probed"] and not req["resent"]):
                continue
            if handle_stall(self, msg_id, req, now - start, timeout):
                return

    def stop(self):
        g = guard(self)
        if g["shell_kc"] is not None:
            g["shell_kc"].stop_channels()
            g["shell_kc"] = None
        original_stop(self)

    RunningKernel._mmcourse_stall_guard = True
    RunningKernel.stall_seconds = STALL_SECONDS
    RunningKernel.probe_seconds = PROBE_SECONDS
    RunningKernel.settle_seconds = SETTLE_SECONDS
    RunningKernel.reply_grace_seconds = REPLY_GRACE_SECONDS
    RunningKernel._transmit = transmit
    RunningKernel.execute_cell_input = execute_cell_input
    RunningKernel.get_message = get_message
    RunningKernel.await_reply = await_reply
    RunningKernel.stop = stop


_install_nbval_stall_guard()


# ------------------------------------------------------------------------------------------------
# The same for nbclient (tests/test_rerun*.py run notebooks with NotebookClient, timeout=600): in
# quick mode its per-cell timeout is capped at --nbval-cell-timeout, and a request that the kernel
# has not started ('busy') within STALL_SECONDS is handled as above: probe the kernel over a fresh
# connection; if it answers (idle) and still has not started the request, send the request (same
# msg_id) once more; if that stalls too, fail the cell now with CellTimeoutError("kernel stall").
# ------------------------------------------------------------------------------------------------
_NBCLIENT_CELL_TIMEOUT: list = [None]  # set in pytest_configure (quick mode only)


def pytest_configure(config):
    config.addinivalue_line("markers", "simulated_kernel_stalls: the test makes kernel stalls on purpose "
                            "(tests/test_kernel_hang.py); they stay out of the 'kernel stalls' section")
    if os.environ.get("MMCOURSE_QUICK") == "1":
        _NBCLIENT_CELL_TIMEOUT[0] = getattr(config.option, "nbval_cell_timeout", None)


async def _probe_kernel_async(connection_info, seconds):
    """Seconds a kernel took to answer kernel_info over a fresh connection, or None (asyncio:
    nbclient's loop is running, and jupyter_core's run_sync would reuse it from a thread)."""
    from jupyter_client.asynchronous import AsyncKernelClient
    client = AsyncKernelClient()
    client.load_connection_info(connection_info)
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    t0 = time.monotonic()
    try:
        await client.kernel_info(reply=True, timeout=seconds)
        return time.monotonic() - t0
    except Exception:
        return None
    finally:
        client.stop_channels()


def _install_nbclient_stall_guard():
    if os.environ.get("MMCOURSE_NBVAL_STALL_GUARD", "1") == "0":
        return
    try:
        import asyncio

        from nbclient.client import NotebookClient
        from nbclient.exceptions import CellTimeoutError
        from nbclient.util import ensure_async
    except ImportError:
        return
    if getattr(NotebookClient, "_mmcourse_stall_guard", False):
        return
    orig_get_timeout = NotebookClient._get_timeout
    orig_process = NotebookClient.process_message
    orig_poll = NotebookClient._async_poll_for_reply
    orig_start_client = NotebookClient.async_start_new_kernel_client

    def get_timeout(self, cell):
        timeout, cap = orig_get_timeout(self, cell), _NBCLIENT_CELL_TIMEOUT[0]
        return cap if cap and (timeout is None or timeout > cap) else timeout

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "busy":
            self.__dict__.setdefault("_mmcourse_busy", set()).add(msg["parent_header"].get("msg_id"))
        return orig_process(self, msg, cell, cell_index)

    async def start_client(self):
        kc = await orig_start_client(self)
        channel, sent = kc.shell_channel, self.__dict__.setdefault("_mmcourse_sent", {})
        send = channel.send

        def recording_send(msg):
            if msg["header"]["msg_type"] == "execute_request":
                sent.clear()  # one request at a time: keep only the latest
                sent[msg["header"]["msg_id"]] = msg
            return send(msg)
        channel.send = recording_send
        return kc

    async def watch(self, msg_id, cell):
        """Returns when the request started or the stall was handled; raises to fail the cell."""
        busy = self.__dict__.setdefault("_mmcourse_busy", set())
        stall, probe, settle = self.mmcourse_stall_seconds, self.mmcourse_probe_seconds, self.mmcourse_settle_seconds
        t0 = time.monotonic()
        await asyncio.sleep(stall)
        if msg_id in busy:
            return
        answered = await _probe_kernel_async(self.km.get_connection_info(), probe)
        waited = time.monotonic() - t0
        if answered is None:
            report_stall(f"nbclient: no start for {waited:.0f} s and no kernel_info answer on a fresh "
                         "connection: the kernel is not idle, so no resend; the cell timeout decides")
            return
        await asyncio.sleep(settle)
        if msg_id in busy:
            report_stall(f"nbclient: the kernel started the request, stalled {waited:.0f} s, once a second "
                         "client connected (no resend)")
            return
        msg = self.__dict__.get("_mmcourse_sent", {}).get(msg_id)
        if msg is None:  # cannot happen (every request is recorded), but never wait 600 s for it
            report_stall(f"nbclient: the idle kernel had not started the request in {waited:.0f} s and it "
                         "was not recorded for a resend, so the cell fails now")
            raise CellTimeoutError.error_from_timeout_and_cell(
                "kernel stall: the idle kernel did not start the cell", int(waited), cell)
        await ensure_async(self.kc.shell_channel.send(msg))
        report_stall(f"nbclient: the idle kernel had not started the request in {waited:.0f} s (it answered "
                     f"kernel_info on a fresh connection in {answered:.1f} s): sent it once more")
        await asyncio.sleep(stall)
        if msg_id in busy:
            return
        waited = time.monotonic() - t0
        report_stall(f"nbclient: the kernel did not start the request after it was sent again; {waited:.0f} s "
                     "without a start, so the cell fails now")
        raise CellTimeoutError.error_from_timeout_and_cell(
            "kernel stall: the idle kernel did not start the cell, sent twice", int(waited), cell)

    async def poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        poll = asyncio.ensure_future(orig_poll(self, msg_id, cell, timeout, task_poll_output_msg,
                                               task_poll_kernel_alive))
        guard = asyncio.ensure_future(watch(self, msg_id, cell))
        try:
            await asyncio.wait({poll, guard}, return_when=asyncio.FIRST_COMPLETED)
            if not poll.done() and guard.exception() is not None:
                task_poll_output_msg.cancel()
                task_poll_kernel_alive.cancel()
                raise guard.exception()
            return await poll
        finally:
            for task in (poll, guard):
                if not task.done():
                    task.cancel()

    NotebookClient._mmcourse_stall_guard = True
    NotebookClient.mmcourse_stall_seconds = STALL_SECONDS
    NotebookClient.mmcourse_probe_seconds = PROBE_SECONDS
    NotebookClient.mmcourse_settle_seconds = SETTLE_SECONDS
    NotebookClient._get_timeout = get_timeout
    NotebookClient.process_message = process_message
    NotebookClient._async_poll_for_reply = poll_for_reply
    NotebookClient.async_start_new_kernel_client = start_client


_install_nbclient_stall_guard()
