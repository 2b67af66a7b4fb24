"""Automations: rules that turn what happened into actions.

The package, one module a job: the words rules use (:mod:`.vocabulary`), rules as
models (:mod:`.rules`), the facts they look at (:mod:`.facts`) and templates over them
(:mod:`.templates`), the pure evaluator (:mod:`.engine`), the shipped rules
(:mod:`.catalogue`), learning maths (:mod:`.learning`) and the breakfast menu
(:mod:`.menu`); then the services: the rules in force (:mod:`.ruleset`), YAML exchange
(:mod:`.exchange`), gathering facts (:mod:`.gather`), learning from a guest's hand
(:mod:`.learner`), the runner (:mod:`.runner`) and the daily schedule (:mod:`.scheduler`).
"""
