"""``kiosk-hq remote``: ask a kiosk for its doctor report or its last log lines over MQTT.

Needs HQ's broker user (only HQ may publish on a device's ``remote/request`` topic;
see :mod:`sync.remote`). The device answers from its ``kiosk-sync`` agent, so it must
be online.
"""

import json
import sys
import threading
import uuid

from sync import protocol
from sync import remote as device_remote
from sync.hq.common import HqError, add_broker_args, close, connect, settings_from_args

MARKS = {"OK": "  OK ", "WARN": " WARN", "FAIL": " FAIL"}


def register(sub) -> None:
    p = sub.add_parser("remote", help="ask a kiosk for its doctor report or its last log lines")
    add_broker_args(p)
    p.add_argument("--program", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("ask", choices=device_remote.ASKS)
    p.add_argument("--lines", type=int, default=device_remote.MAX_LINES,
                   help=f"log lines (at most {device_remote.MAX_LINES})")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")
    p.add_argument("--json", action="store_true", help="print the device's answer as JSON")
    p.set_defaults(handler=cmd_remote)


def ask(settings, program: str, store: str, device: str, what: str, *, lines: int = 200,
        timeout: float = 60.0) -> dict:
    """Send one request and return the device's answer; :class:`HqError` on silence."""
    request_id = str(uuid.uuid4())
    response_topic = protocol.device_topic(program, store, device, device_remote.RESPONSE)
    request_topic = protocol.device_topic(program, store, device, device_remote.REQUEST)
    answer: dict = {}
    got, subscribed = threading.Event(), threading.Event()

    def on_message(client, userdata, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(body, dict) and body.get("id") == request_id:
            answer.update(body)
            got.set()

    client = connect(settings, f"hq-remote-{request_id[:8]}")
    try:
        client.on_message = on_message
        client.on_subscribe = lambda *a: subscribed.set()
        client.subscribe(response_topic, qos=1)
        if not subscribed.wait(10):
            raise HqError(f"the broker did not confirm the subscription to {response_topic}")
        body = {"id": request_id, "ask": what, "lines": lines}
        client.publish(request_topic, json.dumps(body).encode(), qos=1)
        if not got.wait(timeout):
            raise HqError(f"no answer from {device} within {timeout:g} s: is it online? "
                          "(its retained status topic says)")
    finally:
        close(client)
    return answer


def cmd_remote(args) -> int:
    try:
        answer = ask(settings_from_args(args), args.program, args.store, args.device, args.ask,
                     lines=args.lines, timeout=args.timeout)
    except (HqError, ValueError) as exc:
        print(f"kiosk-hq: remote: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(answer, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    elif not answer.get("ok"):
        print(f"{args.device}: {answer.get('error')}", file=sys.stderr)
    elif args.ask == "logs":
        print("\n".join(answer["lines"]))
    else:
        print(f"{args.device} at {answer['at']}: {answer['status']}")
        for check in answer["checks"]:
            print(f"{MARKS.get(check['status'], check['status'])}  {check['name']:<12} "
                  f"{check['message']}")
    return 0 if answer.get("ok") and answer.get("status") != "FAIL" else 1
