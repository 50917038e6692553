"""The tutorial's step servers (docs/tutorial/) serve real requests on
127.0.0.1, and each shows the failure its chapter is about.

The checks are docs/tutorial/tour.py's, the script ``make tutorial`` runs,
so what a student sees there is what is tested here.
"""

import importlib.util
import os
import sys

import pytest

from tests.tutorial.excerpts import find_excerpt

TUTORIAL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "docs", "tutorial")


def load(name):
    """Import a tutorial module by its path (docs/ is not a package)."""
    if TUTORIAL not in sys.path:
        sys.path.append(TUTORIAL)   # the steps import each other by name (step*.py: no clash)
    spec = importlib.util.spec_from_file_location("tutorial_" + name, os.path.join(TUTORIAL, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tour = load("tour")


def transcript(number):
    """The tour's output for step ``number`` as its chapter shows it."""
    step = tour.STEPS[number - 1]
    chapter = os.path.join(TUTORIAL, step.__doc__.split(".py")[0] + ".md")
    with open(chapter) as file:
        text = file.read()
    heading = "== step %d, %s" % (number, step.__doc__)
    block = text[text.index(heading) + len(heading):].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("number", range(1, len(tour.STEPS) + 1))
def test_step(number):
    said = []
    tour.STEPS[number - 1](said.append)
    # What the chapter shows is what the step does.
    find_excerpt(transcript(number), said)


def test_each_step_is_short():
    for name in sorted(os.listdir(TUTORIAL)):
        if name.startswith("step") and name.endswith(".py"):
            with open(os.path.join(TUTORIAL, name)) as file:
                # The region markers the chapters quote by do not count.
                code = [line for line in file if "# region: " not in line and "# endregion: " not in line]
            assert len(code) <= 160, name


def test_a_task_steps_a_coroutine_by_hand():
    task_module = load("step5_task")
    future = task_module.Future()
    seen = []

    async def waits_twice():
        first = await future
        try:
            await task_module.Future()      # never resolved: only a throw() ends this wait
        except TimeoutError as exc:
            return first, exc

    task = task_module.Task(waits_twice(), seen.append)
    task.step()                              # runs to the first await and stops there
    assert task.waiting_on is future and seen == []
    future.set_result("ready")               # the done-callback steps it again
    assert seen == []
    task.throw(TimeoutError("deadline"))
    assert seen == [None]                    # the coroutine returned: StopIteration
