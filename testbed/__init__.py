"""The testbed's command line: one entry point (`testbed COMMAND ...`, testbed/cli.py) over every CLI,
the one-line error parser they all use (testbed/cli_errors.py), the per-request route rule the
proxy applies and the planner simulates (testbed/route_rule.py), and the one atomic file write
(testbed/files.py).

It imports no other package of the testbed when loaded: a command's code is imported when it runs, so
every package may import the error parser and the route rule from here.
"""
