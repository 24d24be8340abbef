# The tables' and figures' functions the rules call, bound to this config: mokd/workflow/specs.py
# (a table's spec and inputs, from its registered builder in mokd/workflow/table_specs.py),
# figures.py and targets.py. No rules here.

from mokd.workflow import figures, specs
from mokd.workflow.targets import all_targets as _all_targets, named_targets

table_spec = partial(specs.table_spec, M, code_version=CODE_VERSION)
table_inputs = partial(specs.table_inputs, M)
table_run_exports = partial(specs.table_run_exports, M)
cost_metrics = M.cost_metrics
cost_inputs = partial(specs.cost_inputs, M)
cost_settings = partial(specs.cost_settings, M)
figure_kind = figures.figure_kind
figure_members = partial(figures.figure_members, M)
figure_settings = partial(figures.figure_settings, M)
all_targets = partial(_all_targets, config)
