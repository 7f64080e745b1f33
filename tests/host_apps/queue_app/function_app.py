"""Fixture app for tests/test_local_host.py: queue triggers. Records deliveries as JSON lines."""

import json
import os

import azure.functions as func

app = func.FunctionApp()


def record(**data: object) -> None:
    with open(os.environ["HOST_TEST_RECORD"], "a", encoding="utf-8") as out:
        out.write(json.dumps(data) + "\n")


@app.queue_trigger(arg_name="msg", queue_name="%JOBS_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="results", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage, out: func.Out[str]) -> None:
    record(
        fn="work",
        id=msg.id,
        body=msg.get_body().decode(),
        dequeue_count=msg.dequeue_count,
        has_insertion_time=msg.insertion_time is not None,
        has_pop_receipt=bool(msg.pop_receipt),
    )
    out.set(json.dumps({"done": msg.get_json()}))


@app.queue_trigger(arg_name="msg", queue_name="fails", connection="AzureWebJobsStorage")
def fails(msg: func.QueueMessage) -> None:
    record(fn="fails", id=msg.id, dequeue_count=msg.dequeue_count)
    raise RuntimeError("this function always fails")


@app.queue_trigger(arg_name="msg", queue_name="dead-poison", connection="AzureWebJobsStorage")
def dead(msg: func.QueueMessage) -> None:
    record(fn="dead", dequeue_count=msg.dequeue_count)
    raise RuntimeError("fails on a queue that has no poison queue")
