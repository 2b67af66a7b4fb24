"""Automations: rules that turn what happened into actions.

One module a job. Pure: the words rules use (:mod:`.vocabulary`), rules as pydantic
models (:mod:`.rules`) and what is wrong with one, in words (:mod:`.problems`), the
facts a rule looks at (:mod:`.facts`) and templates over them (:mod:`.templates`), the
evaluator (:mod:`.engine`), the shipped rules (:mod:`.catalogue`), learning maths
(:mod:`.learning`), the breakfast menu (:mod:`.menu`), YAML exchange (:mod:`.exchange`)
and what happened (:mod:`.occurrence`). Services, reading and writing through
:mod:`hub.store.automations`: the rules in force (:mod:`.ruleset`), gathering the facts
(:mod:`.gather`), learning from a guest's hand (:mod:`.learner`), the runner
(:mod:`.runner`) and the daily schedule (:mod:`.scheduler`).
"""
