"""Queue triggers: commands, rollout steps, and the poison queues the host fills.

An exception here makes the host retry the message (host.json ``maxDequeueCount``) and
then move it to ``<queue>-poison``; handlers raise only for trouble worth a retry.

The handlers are imported inside each function, on its first call, not when the worker
indexes the app (cold start: Microsoft Learn, "Python developer reference for Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference-python).
"""

from __future__ import annotations

import azure.functions as func

from shared.queues import COMMANDS_QUEUE, POISON_SUFFIX, ROLLOUT_QUEUE

bp = func.Blueprint()
CONNECTION = "AzureWebJobsStorage"


@bp.function_name("commands")
@bp.queue_trigger(arg_name="msg", queue_name=COMMANDS_QUEUE, connection=CONNECTION)
def on_command(msg: func.QueueMessage) -> None:
    from handlers import commands, deps

    commands.handle_message(deps.current(), msg.get_body(), msg.id)


@bp.function_name("rollout")
@bp.queue_trigger(arg_name="msg", queue_name=ROLLOUT_QUEUE, connection=CONNECTION)
def on_rollout_step(msg: func.QueueMessage) -> None:
    from handlers import deps, rollout

    rollout.handle_message(deps.current(), msg.get_body(), msg.id)


@bp.function_name("commands_poison")
@bp.queue_trigger(arg_name="msg", queue_name=COMMANDS_QUEUE + POISON_SUFFIX, connection=CONNECTION)
def on_command_poison(msg: func.QueueMessage) -> None:
    from handlers import deps, operators

    operators.record_poison(deps.current(), COMMANDS_QUEUE + POISON_SUFFIX, msg.get_body(), msg.id)


@bp.function_name("rollout_poison")
@bp.queue_trigger(arg_name="msg", queue_name=ROLLOUT_QUEUE + POISON_SUFFIX, connection=CONNECTION)
def on_rollout_poison(msg: func.QueueMessage) -> None:
    from handlers import deps, operators

    operators.record_poison(deps.current(), ROLLOUT_QUEUE + POISON_SUFFIX, msg.get_body(), msg.id)
