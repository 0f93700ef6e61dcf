"""The README's Node-RED recipe: its function node, as printed, run by Node.js on real payloads.

Node.js is part of the project's machine (Node-RED runs on it too); without it this test fails
rather than skip, so a broken recipe is never passed over silently."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import timedelta

from conftest import ROOT
from dashboard_helpers import T0, window

# Runs a Node-RED function body the way Node-RED does for this one (msg and a node context),
# printing per message the {topic, payload} it sends on, or "dropped".
HARNESS = """
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const store = {};
const context = {get: (k) => store[k], set: (k, v) => { store[k] = v; }};
const body = new Function('msg', 'context', input.func);
const out = input.messages.map((m) => {
  const sent = body({topic: m.topic, payload: m.payload}, context);
  return sent == null ? 'dropped' : {topic: sent.topic, payload: sent.payload};
});
console.log(JSON.stringify(out));
"""


def readme_function() -> str:
    """The ``func`` of the function node in the README's Node-RED flow."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("**Node-RED.**"):]
    flow = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    return next(node["func"] for node in flow if node["type"] == "function")


def test_node_red_recipe_keeps_a_new_sequence_and_drops_redeliveries_and_forgeries():
    def msg(device_id, seq, minute, score, sequence_id="0123456789abcdef", topic_id=None):
        w = window(device_id, seq, T0 + timedelta(minutes=minute), 60, 12 if score is not None else 2, score)
        payload = {**w.model_dump(by_alias=True), "sequence_id": sequence_id}
        return {"topic": f"roompulse/{topic_id or device_id}/engagement", "payload": payload}

    messages = [
        msg("room-101", 0, 0, 0.71),
        msg("room-101", 1, 1, 0.64),
        msg("room-101", 1, 1, 0.64),  # QoS 1 redelivery
        msg("room-101", 2, 2, None),  # suppressed: sent on as null, never as 0
        msg("room-101", 0, 60, 0.55, sequence_id="fedcba9876543210"),  # state file lost: seq from 0 again
        msg("room-101", 1, 61, 0.58, sequence_id="fedcba9876543210"),
        msg("room-101", 3, 3, 0.9, topic_id="attacker"),  # another publisher speaking for room-101
        msg("room-102", 0, 0, 0.8),
    ]
    result = subprocess.run(["node", "-e", HARNESS], input=json.dumps({"func": readme_function(),
                                                                       "messages": messages}),
                            capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(result.stdout) == [
        {"topic": "room-101", "payload": 71},
        {"topic": "room-101", "payload": 64},
        "dropped",
        {"topic": "room-101", "payload": None},
        {"topic": "room-101", "payload": 55},
        {"topic": "room-101", "payload": 58},
        "dropped",
        {"topic": "room-102", "payload": 80},
    ]
