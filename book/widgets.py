"""A widget output drawn as static HTML from the notebook's saved widget state, for the site.

A notebook saved from Jupyter keeps, in ``metadata.widgets``, the last state of every widget
model: slider values, dropdown choices, the text of HTML readouts and the outputs (figures,
printed text) of ``Output`` widgets. ``static_outputs`` turns one widget-view output into plain
notebook outputs: a note saying the control is live only while the notebook runs and what
changing it does, the controls drawn disabled at their saved values, and each ``Output``
widget's saved outputs as ordinary outputs (so its figures become real PNG files on the site).
Nothing here loads ipywidgets' JavaScript, which would need a CDN.
"""

from __future__ import annotations

import html
import math
import re

import nbformat

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"

_SLIDERS = {"IntSlider", "FloatSlider", "FloatLogSlider", "IntRangeSlider", "FloatRangeSlider",
            "SelectionSlider", "SelectionRangeSlider", "Play"}
_CHOICES = {"Dropdown", "Select", "SelectMultiple", "RadioButtons", "ToggleButtons", "Combobox"}
_TEXTS = {"Text", "Textarea", "IntText", "FloatText", "BoundedIntText", "BoundedFloatText", "Password"}
_PROGRESS = {"IntProgress", "FloatProgress"}
# (verb phrase, noun) for the note: "moving the threshold slider", "pressing Start"
_ACTIONS = [(_SLIDERS, "moving the {} slider{}"), (_CHOICES, "choosing {}"), ({"Checkbox", "ToggleButton"},
            "ticking {}"), (_TEXTS, "editing {}"), ({"Button"}, "pressing {}")]


def widget_state(nb) -> dict:
    """``{model_id: model}`` saved in the notebook's metadata (empty if it saved none)."""
    return nb.metadata.get("widgets", {}).get(STATE, {}).get("state", {})


def _name(model: dict) -> str:
    return model.get("model_name", "").removesuffix("Model")


def _children(model: dict) -> list[str]:
    return [c.removeprefix("IPY_MODEL_") for c in model.get("state", {}).get("children", [])]


def _walk(mid: str, state: dict):
    """Every model under ``mid`` (itself included), depth first, in display order."""
    model = state.get(mid)
    if model is None:
        return
    yield model
    for c in _children(model):
        yield from _walk(c, state)
    if _name(model) == "Output":  # widgets displayed inside an Output
        for out in model["state"].get("outputs", []):
            if VIEW in out.get("data", {}):
                yield from _walk(out["data"][VIEW]["model_id"], state)


def _fmt(value, fmt: str | None) -> str:
    try:
        return format(value, fmt.replace("~", "")) if fmt else str(value)
    except (TypeError, ValueError):
        return str(value)


def _desc(s: dict) -> str:
    d = s.get("description", "")
    return d if s.get("description_allow_html") else html.escape(d)


def _control_html(name: str, s: dict) -> str:
    """One control, disabled, at its saved value."""
    label = f'<span class="mmw-label">{_desc(s)}</span>' if s.get("description") else ""
    labels = s.get("_options_labels", [])
    if name in {"SelectionSlider", "SelectionRangeSlider"}:
        idx = s.get("index", 0)
        idx = idx if isinstance(idx, int) else (idx or [0])[0]
        readout = labels[idx] if 0 <= idx < len(labels) else ""
        rng = f'min="0" max="{max(len(labels) - 1, 0)}" step="1" value="{idx}"'
    elif name == "FloatLogSlider":
        value, base = s.get("value", 1.0), s.get("base", 10.0)
        exp = math.log(value, base) if value and value > 0 else s.get("min", 0)
        readout = _fmt(value, s.get("readout_format", ".3g"))
        rng = f'min="{s.get("min", 0)}" max="{s.get("max", 1)}" step="{s.get("step", 0.1)}" value="{exp}"'
    elif name in _SLIDERS:
        value = s.get("value", 0)
        lo = value[0] if isinstance(value, list) else value
        readout = "–".join(_fmt(v, s.get("readout_format")) for v in (value if isinstance(value, list) else [value]))
        rng = f'min="{s.get("min", 0)}" max="{s.get("max", 100)}" step="{s.get("step", 1)}" value="{lo}"'
    if name in _SLIDERS:
        return (f'<span class="mmw-control">{label}<input type="range" disabled {rng}>'
                f'<span class="mmw-value">{html.escape(str(readout))}</span></span>')
    if name in {"ToggleButtons", "RadioButtons"}:
        idx = s.get("index")
        opts = "".join(f'<span class="mmw-option{" mmw-selected" if i == idx else ""}">{html.escape(o)}</span>'
                       for i, o in enumerate(labels))
        return f'<span class="mmw-control">{label}<span class="mmw-options">{opts}</span></span>'
    if name in _CHOICES:
        idx = s.get("index")
        idx = set(idx) if isinstance(idx, list) else {idx}
        opts = "".join(f'<option{" selected" if i in idx else ""}>{html.escape(o)}</option>' for i, o in enumerate(labels))
        return f'<span class="mmw-control">{label}<select disabled>{opts}</select></span>'
    if name in {"Checkbox", "ToggleButton"}:
        checked = " checked" if s.get("value") else ""
        return f'<span class="mmw-control"><label><input type="checkbox" disabled{checked}> {_desc(s)}</label></span>'
    if name == "Button":
        style = s.get("button_style") or "default"
        return f'<span class="mmw-control"><button type="button" class="mmw-button mmw-{style}" disabled>{_desc(s)}</button></span>'
    if name in _TEXTS:
        return (f'<span class="mmw-control">{label}<input type="text" disabled '
                f'value="{html.escape(str(s.get("value", "")))}"></span>')
    if name in _PROGRESS:
        return (f'<span class="mmw-control">{label}<progress max="{s.get("max", 100) - s.get("min", 0)}" '
                f'value="{s.get("value", 0) - s.get("min", 0)}"></progress></span>')
    if name in {"HTML", "HTMLMath"}:
        return f'<span class="mmw-html">{label}{s.get("value", "")}</span>'
    if name in {"Label", "Valid"}:
        return f'<span class="mmw-html">{label}{html.escape(str(s.get("value", "")))}</span>'
    return f'<span class="mmw-unknown">[{html.escape(name)} widget]</span>'


def _pieces(mid: str, state: dict) -> list:
    """The widget ``mid`` as a list of HTML strings and notebook outputs, in display order."""
    model = state.get(mid)
    if model is None:
        return [f'<span class="mmw-unknown">[widget {html.escape(mid[:8])} not saved]</span>']
    name, s = _name(model), model.get("state", {})
    if name == "Output":
        pieces = []
        for out in s.get("outputs", []):
            if VIEW in out.get("data", {}):
                pieces += _pieces(out["data"][VIEW]["model_id"], state)
            else:
                pieces.append(nbformat.from_dict(out))
        return pieces
    if not _children(model):
        return [_control_html(name, s)]
    inner = [p for c in _children(model) for p in _pieces(c, state)]
    if all(isinstance(p, str) for p in inner):  # a box of plain controls: one HTML block
        kind = "mmw-hbox" if name == "HBox" else "mmw-vbox"
        return [f'<div class="{kind}">' + "".join(inner) + "</div>"]
    return inner  # a box that holds figures: its parts in order, without the box


def _join(items: list[str], word: str = "and") -> str:
    items = [f"<em>{i}</em>" for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {word} " + items[-1]


def note(models: list[dict]) -> str:
    """The visible line above a frozen widget: live only while the notebook runs, and what it does."""
    names = [(_name(m), m.get("state", {})) for m in models]
    actions = []
    for kinds, phrase in _ACTIONS:
        descs = [html.escape(s.get("description") or n) for n, s in names if n in kinds]
        if descs:
            actions.append(phrase.format(_join(descs, "or"), "s" if len(descs) > 1 else ""))
    if not actions:
        if any(n in _PROGRESS for n, _ in names):
            return ('<p class="mmw-note">Progress bar, shown as it was saved at the end of the run; '
                    "it moves only while the notebook runs.</p>")
        return ('<p class="mmw-note">Interactive output, shown as saved at the end of the run; '
                "it is live only while the notebook runs.</p>")
    targets = []
    outputs = [s.get("outputs", []) for n, s in names if n == "Output"]
    if any("image/png" in o.get("data", {}) for outs in outputs for o in outs):
        targets.append("the figure")
    if any(o.get("output_type") == "stream" or "text/plain" in o.get("data", {}) and "image/png" not in o.get("data", {})
           for outs in outputs for o in outs):
        targets.append("the printed numbers")
    if any(n in {"HTML", "HTMLMath", "Label"} and s.get("value") for n, s in names):
        targets.append("the readout")
    if any(not outs for outs in outputs):
        targets.append("an output area that was empty when the notebook was saved")
    if not targets:
        targets.append("the output below the controls")
    doing = ", ".join(actions[:-1]) + " or " + actions[-1] if len(actions) > 1 else actions[0]
    return ('<div class="admonition note mmw-live"><p class="admonition-title">Live only when the notebook runs</p>'
            f"<p>In Jupyter or Colab, {doing} runs a callback in the notebook's kernel that updates "
            f"{' and '.join(targets)}. Here the controls are frozen at the state saved when the notebook "
            "was last run.</p></div>")


_REPR_WIDGET = re.compile(r"\b(\w+)\((?:[^()]*?)description='([^']*)'")


def _from_repr(text: str) -> list[dict]:
    """Models guessed from a widget's ``text/plain`` repr, for notebooks saved without state."""
    return [{"model_name": f"{n}Model", "state": {"description": d}} for n, d in _REPR_WIDGET.findall(text)]


def static_outputs(output: dict, state: dict) -> list:
    """Replace one widget-view output by plain outputs: the note, the frozen controls, the figures.

    Args:
        output: a notebook output whose ``data`` holds ``application/vnd.jupyter.widget-view+json``.
        state: ``widget_state(nb)`` of the same notebook.

    Returns:
        notebook outputs (``display_data`` with ``text/html``, and the saved outputs of ``Output``
        widgets), to put where ``output`` was.
    """
    mid = output["data"][VIEW]["model_id"]
    if mid not in state:  # no saved state: the note alone, built from the repr
        models = _from_repr(output["data"].get("text/plain", ""))
        return [nbformat.v4.new_output("display_data", data={"text/html": note(models)})]
    models = list(_walk(mid, state))
    pieces = [note(models)] + _pieces(mid, state)
    outs, buffer = [], []
    for p in pieces + [None]:
        if isinstance(p, str):
            buffer.append(p)
            continue
        if buffer:
            outs.append(nbformat.v4.new_output("display_data", data={
                "text/html": '<div class="mmw-static">' + "".join(buffer) + "</div>"}))
            buffer = []
        if p is not None:
            outs.append(p)
    return outs
