"""The `mlplat` command (typer + rich). Kept light at import: the engine loads only inside commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from provisioner.api import Stack
    from provisioner.plan import Plan

app = typer.Typer(
    name="mlplat",
    help="Provision ML platforms from one cloud-neutral stack file: preview, apply, destroy.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion: typer imports its completion code anyway
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    epilog="Example: mlplat preview -f stacks/quickstart.yaml (then: mlplat apply -f stacks/quickstart.yaml --yes)",
)
state_app = typer.Typer(help="Inspect and repair the recorded state.", no_args_is_help=True,
                        epilog="Example: mlplat state list -f stacks/quickstart.yaml")
app.add_typer(state_app, name="state")
env_app = typer.Typer(help="Environments of a stack (dev, staging, prod…): their variable values and own state.",
                      no_args_is_help=True, epilog="Example: mlplat env list -f stacks/quickstart.yaml")
app.add_typer(env_app, name="env")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("mlplat")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        sys.stdout.write(f"mlplat {found}\n")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print mlplat's version and exit")] = False) -> None:
    pass

DEFAULT_STACK = "mlplat.yaml"
StackFile = Annotated[Path, typer.Option("--file", "-f", help="Stack file (default $MLPLAT_STACK or ./mlplat.yaml)",
                                         show_default=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout")]
StateUrl = Annotated[str | None, typer.Option("--state", help="State location: sqlite:///path/state.db, "
                                                              "postgresql://host/db or s3://bucket/prefix")]
LockTimeout = Annotated[float, typer.Option("--lock-timeout", min=0, help="Seconds to wait for another process's "
                                                                         "lock on the stack (default: fail at once)")]
EnvName = Annotated[str | None, typer.Option(
    "--env", "-e", help="Environment (dev, staging, prod…): its variable values from <stack>.<env>.yaml and its own "
                        "state (default $MLPLAT_ENV, else the one `mlplat env select` chose, else default)",
    show_default=False)]
VarValues = Annotated[list[str] | None, typer.Option(
    "--var", help="Set a declared variable, NAME=VALUE (repeatable; overrides the environment's file)",
    show_default=False)]
ForceNewState = Annotated[bool, typer.Option("--force-new-state", help="Start from an empty state even though the "
                                                                       "stack's working area holds objects")]
Targets = Annotated[list[str] | None, typer.Option(
    "--target", metavar="ADDRESS", help="Plan only this resource (e.g. iris.endpoint.main) or every resource under "
                                        "an address prefix (e.g. iris), plus what they depend on; repeatable. The "
                                        "plan is partial: run a full apply afterwards", show_default=False)]
Replaces = Annotated[list[str] | None, typer.Option(
    "--replace", metavar="ADDRESS", help="Replace this recorded resource even though nothing changed (e.g. "
                                         "iris.endpoint.main); repeatable", show_default=False)]


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)  # long paths stay on one line in pipes


def _plan_console() -> Any:
    """For plans: a fast line printer (rich's per-line cost dominated big plans), rich for anything else."""
    from provisioner.console import FastConsole

    return FastConsole()


def _stack_path(path: Path | None) -> Path:
    """The stack file to read: -f, else $MLPLAT_STACK, else ./mlplat.yaml; a missing one is a user error."""
    from_env = path is None and bool(os.environ.get("MLPLAT_STACK"))
    chosen = path or Path(os.environ.get("MLPLAT_STACK") or DEFAULT_STACK)
    if chosen.exists():
        return chosen
    from provisioner.errors import SpecError

    if path is None and not from_env:
        raise SpecError([f"no stack file: ./{DEFAULT_STACK} does not exist in {Path.cwd()}"],
                        hint="name the stack file with -f STACK (e.g. -f stacks/quickstart.yaml) or set "
                             "$MLPLAT_STACK")
    import difflib

    where = chosen.parent
    names = sorted(p.name for p in where.glob("*.y*ml") if p.suffix in (".yaml", ".yml")) if where.is_dir() else []
    near = difflib.get_close_matches(chosen.name, names, n=1, cutoff=0.0)
    source = "; it was named by $MLPLAT_STACK" if from_env else ""
    if near:
        hint = f"did you mean {where / near[0]}?"
    elif where.is_dir():
        hint = f"{where} holds no *.yaml file"
    else:
        hint = f"the directory {where} does not exist either"
    raise SpecError([f"{chosen}: no such stack file (it does not exist{source})"], hint=hint)


def _open(path: Path | None, state: str | None = None, *, json_mode: bool = False, parallelism: int = 10,
          lock_timeout: float = 0.0, force_new_state: bool = False, progress: Any = None,
          saved: Plan | None = None) -> Stack:
    """`progress`: the display of an apply (`provisioner.live.progress`); default: event lines (none with --json)."""
    path = _stack_path(path)
    from provisioner.api import Stack
    from provisioner.apply import ApplyOptions

    listeners = [progress] if progress is not None else [] if json_mode else [_progress_printer()]
    environment, variables = _environment()
    if saved is not None:  # a saved plan's stack is opened in the environment, with the --var values, it records
        from provisioner.spec.variables import plan_environment

        environment, variables = plan_environment(saved.environment, saved.variables, environment, variables)
    return Stack(path, state_url=state, listeners=listeners,
                 options=ApplyOptions(parallelism=parallelism), lock_timeout=lock_timeout,
                 force_new_state=force_new_state, environment=environment, variables=variables)


def _environment() -> tuple[str | None, dict[str, str]]:
    """The command's `--env` and `--var NAME=VALUE` options (every command reading a stack has them): read from
    the click context, so the helpers need not thread them through each command."""
    from provisioner.errors import MlplatError

    ctx = _click_context()
    params = ctx.params if ctx is not None else {}
    variables: dict[str, str] = {}
    for item in params.get("var") or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise MlplatError(f"--var {item!r}: write NAME=VALUE", hint="e.g. --var replicas=3")
        variables[name.strip()] = value
    return params.get("env"), variables


def _click_context() -> Any:
    """The running command's click context. typer >= 0.2x vendors click (`typer._click`): plain click's
    `get_current_context` does not see typer's contexts there."""
    import importlib

    for module in ("typer._click.globals", "click"):
        try:
            ctx = importlib.import_module(module).get_current_context(silent=True)
        except (ImportError, AttributeError):
            continue
        if ctx is not None:
            return ctx
    return None


def _emit_json(data: Any) -> None:
    from provisioner.secrets import mask

    sys.stdout.write(json.dumps(mask(data), indent=2, sort_keys=True, default=str) + "\n")


def _is_secret(value: Any) -> bool:
    from provisioner.secrets import is_secret

    return is_secret(value)


def _shown(value: Any) -> str:
    """A value for people: secrets masked, JSON otherwise."""
    from provisioner.secrets import mask

    return json.dumps(mask(value))


# -- commands -------------------------------------------------------------------------------------------------
@app.command(epilog="Example: mlplat validate -f stacks/quickstart.yaml")
def validate(file: StackFile = None, env: EnvName = None, var: VarValues = None,
             json_out: JsonFlag = False) -> None:
    """Check the stack file, target settings and capabilities, and policy hooks."""
    stack = _open(file, json_mode=json_out)
    warnings = stack.validate()
    resources, _ = stack.lower()
    if json_out:
        _emit_json({"valid": True, "stack": stack.name, "environment": stack.loaded.environment,
                    "resources": len(resources), "warnings": [w.message for w in warnings]})
        return
    out = _console()
    for w in warnings:
        out.print(f"[yellow]warning:[/] {w.message}")
    out.print(f"[green]✓[/] {stack.loaded.path} is valid: stack [bold]{stack.name}[/], "
              f"{len(stack.platform.components())} components → {len(resources)} resources")


@app.command(epilog="Example: mlplat preview -f stacks/quickstart.yaml -o plan.json   (one component and what it "
                    "needs: mlplat preview --target iris -f stacks/quickstart.yaml)")
def preview(
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the plan to apply it exactly later")] = None,
    json_out: JsonFlag = False,
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode",
                                                    help="Exit 0: no changes, 2: changes, 1: error")] = False,
    refresh: Annotated[bool, typer.Option("--refresh/--no-refresh", help="Read resources to detect drift")] = True,
    destroy: Annotated[bool, typer.Option("--destroy", help="Preview destroying everything")] = False,
    target: Targets = None,
    replace: Replaces = None,
    state: StateUrl = None,
    force_new_state: ForceNewState = False,
) -> None:
    """Show what apply would change (create / update / replace / delete)."""
    stack = _open(file, state, json_mode=json_out, force_new_state=force_new_state)
    plan = stack.plan(refresh=refresh, destroy=destroy, targets=target, replace=replace)
    cost = None if destroy else stack.cost_reports()
    if out is not None:
        out.write_text(plan.dumps(stack.state.codec))  # secrets sealed, as in the state
    if json_out:
        _emit_json(_plan_json(plan, cost))
    else:
        from provisioner.render import render_plan

        render_plan(_plan_console(), plan, cost)
        if out is not None:
            _console().print(f"\nSaved the plan to [bold]{out}[/]; apply exactly it with: mlplat apply {out}")
    if detailed_exitcode and plan.has_changes:
        raise typer.Exit(2)


def _plan_json(plan: Plan, cost: tuple[Any, Any] | None) -> dict[str, Any]:
    """A plan as `preview --json` prints it (with its cost, when priced)."""
    from provisioner.live import plan_json

    return plan_json(plan, cost)


@app.command(epilog="Example: mlplat show plan.json   (the plan saved by: mlplat preview -f stack.yaml -o plan.json)")
def show(
    plan_file: Annotated[Path, typer.Argument(help="A plan saved by `preview -o`")],
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    json_out: JsonFlag = False,
    state: StateUrl = None,
) -> None:
    """Show a saved plan as preview showed it (or as JSON), without changing anything."""
    from provisioner.plan import Plan

    text = _read_plan(plan_file)
    recorded = Plan.loads(text)
    stack = _open(file or Path(recorded.stack_file), state, json_mode=True, saved=recorded)
    plan = Plan.loads(text, stack.state.codec)  # opens the plan's sealed secrets (shown masked)
    cost = None if plan.destroy else stack.cost_reports()
    if json_out:
        _emit_json(_plan_json(plan, cost))
        return
    from provisioner.render import render_plan

    render_plan(_plan_console(), plan, cost)
    serial = stack.state.meta().serial
    if serial != plan.serial:
        _console().print(f"\n[yellow]warning:[/] the state changed since this plan was made (serial {plan.serial} "
                         f"→ {serial}): apply would refuse it; make a new one with mlplat preview -o")


def _read_plan(plan_file: Path) -> str:
    try:
        return plan_file.read_text()
    except OSError as err:
        from provisioner.errors import MlplatError

        raise MlplatError(f"cannot read plan {plan_file}: {err.strerror}") from None


@app.command(epilog="Example: mlplat apply -f stacks/quickstart.yaml --yes   (or: mlplat apply plan.json; one "
                    "component: mlplat apply --target iris --yes; a new object: --replace iris.endpoint.main)")
def apply(
    plan_file: Annotated[Path | None, typer.Argument(help="A plan saved by `preview -o`; applied exactly")] = None,
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    json_out: JsonFlag = False,
    refresh: Annotated[bool, typer.Option("--refresh/--no-refresh")] = True,
    parallelism: Annotated[int, typer.Option(help="Steps run at once (per target)", min=1)] = 10,
    target: Targets = None,
    replace: Replaces = None,
    state: StateUrl = None,
    lock_timeout: LockTimeout = 0.0,
    force_new_state: ForceNewState = False,
) -> None:
    """Make the platform match the stack file (or apply a saved plan)."""
    from provisioner.plan import Plan

    saved = None
    if plan_file is not None and (target or replace):
        from provisioner.errors import MlplatError

        raise MlplatError("--target and --replace do not go with a saved plan: it is applied exactly as made",
                          hint=f"make the plan with them: mlplat preview {'--target ' if target else '--replace '}"
                               f"{(target or replace or [''])[0]} -o {plan_file}")
    if plan_file is not None:
        text = _read_plan(plan_file)
        recorded = Plan.loads(text)
        file = file or Path(recorded.stack_file)
    progress = _progress(json_out)
    stack = _open(file, state, json_mode=json_out, parallelism=parallelism, lock_timeout=lock_timeout,
                  force_new_state=force_new_state, progress=progress,
                  saved=recorded if plan_file is not None else None)
    if plan_file is not None:
        saved = Plan.loads(text, stack.state.codec)  # opens the plan's sealed secrets
    _run_plan(stack, saved, yes=yes or saved is not None, json_out=json_out, refresh=refresh, verb="apply",
              progress=progress, targets=target, replace=replace)


@app.command(epilog="Example: mlplat destroy -f stacks/quickstart.yaml --yes   (one resource and what uses it: "
                    "mlplat destroy --target iris.endpoint.main --yes)")
def destroy(
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    json_out: JsonFlag = False,
    parallelism: Annotated[int, typer.Option(min=1)] = 10,
    target: Annotated[list[str] | None, typer.Option(
        "--target", metavar="ADDRESS", help="Delete only this resource (or every one under an address prefix) and "
                                            "what depends on it; repeatable", show_default=False)] = None,
    state: StateUrl = None,
    lock_timeout: LockTimeout = 0.0,
    force_new_state: ForceNewState = False,
) -> None:
    """Delete every resource the stack's state records, then the state itself and mlplat's working
    directories when nothing is left in them."""
    progress = _progress(json_out)
    stack = _open(file, state, json_mode=json_out, parallelism=parallelism, lock_timeout=lock_timeout,
                  force_new_state=force_new_state, progress=progress)
    _run_plan(stack, None, yes=yes, json_out=json_out, refresh=False, verb="destroy", progress=progress,
              targets=target)
    kept = stack.remove_state_if_empty()
    if json_out:
        return
    if kept is None:
        _console().print("The state recorded nothing more and was removed, with mlplat's working directories.")
    else:
        _console().print(f"The state is kept at {kept}.")


@app.command(epilog="Example: mlplat migrate iris --to aws -f stacks/hybrid.yaml")
def migrate(
    components: Annotated[list[str], typer.Argument(help="Components to move (their names in the stack file)")],
    to: Annotated[str | None, typer.Option("--to", help="The target to move them to")] = None,
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    keep_source: Annotated[bool, typer.Option("--keep-source", help="Keep the source running after the move "
                                                                    "(--finish deletes it later)")] = False,
    rollback: Annotated[bool, typer.Option("--rollback", help="Return the components to the target they are "
                                                              "moving from (while it still exists)")] = False,
    finish: Annotated[bool, typer.Option("--finish", help="Delete the source a --keep-source move kept")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    json_out: JsonFlag = False,
    parallelism: Annotated[int, typer.Option(min=1)] = 10,
    state: StateUrl = None,
    lock_timeout: LockTimeout = 0.0,
) -> None:
    """Move components to another target: rewrites their `target:` in the stack file (comments and layout
    kept), shows the migration preview and applies it after confirmation. The stack file is left as it was if
    the move is cancelled or cannot be planned."""
    from provisioner.errors import MlplatError
    from provisioner.migration.stackfile import set_targets

    if sum(bool(x) for x in (to, rollback, finish)) != 1:
        raise MlplatError("say where to: --to TARGET, --rollback or --finish (exactly one)",
                          hint="mlplat migrate iris --to aws -f stack.yaml")
    path = _stack_path(file)
    stack = _open(path, state, json_mode=json_out, parallelism=parallelism, lock_timeout=lock_timeout)
    unknown = sorted(set(components) - {c.name for c in stack.platform.components()})
    if unknown:
        raise MlplatError(f"{path} declares no component {', '.join(map(repr, unknown))}",
                          hint=f"components: {', '.join(c.name for c in stack.platform.components())}")
    moves: dict[str, str | None] = {}
    if rollback:
        from provisioner.migration.model import migration_address

        records = stack.state.resources()
        for name in components:
            marker = records.get(migration_address(name))
            if marker is None:
                raise MlplatError(f"{name!r} is not moving: there is nothing to roll back",
                                  hint="a finished move is undone by moving back: mlplat migrate "
                                       f"{name} --to <its old target>")
            moves[name] = marker.inputs["source"]
    elif to is not None:
        if to not in stack.targets:
            raise MlplatError(f"{path} declares no target {to!r}",
                              hint=f"declared targets: {', '.join(sorted(stack.targets))}; add it under targets:")
        moves = dict.fromkeys(components, to)
    default = stack.platform.target
    original = path.read_text(encoding="utf-8")
    if moves:
        # checked first on the file as it is (errors name its lines), the moved components' targets set in memory
        for component in stack.platform.components():
            if component.name in moves:
                component.target = moves[component.name]
        stack.check()
        stack.lower()
        # a target equal to the stack's default is written as no key, as the file had it
        path.write_text(set_targets(path, {n: (None if t == default else t) for n, t in moves.items()}),
                        encoding="utf-8")
    stack.close()
    try:
        progress = _progress(json_out)
        stack = _open(path, state, json_mode=json_out, parallelism=parallelism, lock_timeout=lock_timeout,
                      progress=progress)
        again = f"mlplat migrate {' '.join(components)} " + (f"--to {to}" if to else "--rollback" if rollback
                                                                else "--finish") + f" -f {path}"
        _run_plan(stack, None, yes=yes, json_out=json_out, refresh=True, verb="apply", command=again,
                  progress=progress, keep_source=frozenset(components) if keep_source else frozenset(),
                  finish=frozenset(components) if finish else frozenset())
    except BaseException as err:
        from provisioner.migration.runner import MigrationFailed

        if not isinstance(err, MigrationFailed | KeyboardInterrupt) and not stack.state.resources().get(
                f"_migration.{components[0]}"):
            path.write_text(original, encoding="utf-8")  # nothing moved: the file says what is deployed
        raise


def _run_plan(stack: Stack, saved: Plan | None, *, yes: bool, json_out: bool, refresh: bool, verb: str,
              progress: Any, command: str | None = None, **plan_options: Any) -> None:
    """Plan (or take the saved plan), show it, confirm, apply. `command`: what to run again with --yes.
    `progress` (`provisioner.live`) shows the plan, the apply's events and, with --json, the summary."""
    from provisioner.errors import MlplatError

    console = _plan_console()
    with stack.locked(verb), progress:
        plan = saved or stack.plan(refresh=refresh, destroy=verb == "destroy", **plan_options)
        progress.plan(plan, None if verb == "destroy" or saved is not None else stack.cost_reports(),
                      show=saved is None)
        if not plan.has_changes:
            if plan.has_drift:
                stack.apply(plan)  # records what the refresh saw
            elif saved is None:
                stack.sync_outputs(plan)
                stack.sweep()  # what a killed run left that no record names (e.g. a server it started)
            if json_out:
                progress.summary({"applied": 0, "summary": plan.summary(), "outputs": stack.outputs()})
            return
        if not yes:
            if not sys.stdin.isatty():
                raise MlplatError(f"refusing to {verb} without --yes: standard input is not a terminal",
                                  hint=f"the plan is shown above; run `{command} --yes` to make it" if command
                                  else f"review with `mlplat preview`, then run `mlplat {verb} --yes`")
            answer = typer.prompt(f"\nDo you want to {verb} these changes? Only 'yes' will be accepted",
                                  err=json_out)  # stdout carries only JSON lines
            if answer.strip() != "yes":
                raise MlplatError(f"{verb} cancelled")
        progress.begin(plan)
        result = stack.apply(plan)
    outputs = stack.outputs()
    if json_out:
        progress.summary({"applied": result.done, "summary": plan.summary(),
                          "elapsed_s": round(result.elapsed, 3), "outputs": outputs,
                          **({"migrations": stack.migration_timings} if plan.migrations else {})})
        return
    console.print(f"\n[bold green]{verb.capitalize()} complete![/] {result.done} step(s) in {result.elapsed:.1f}s.")
    if plan.targets:
        from provisioner.targeting import PARTIAL_WARNING

        console.print(f"[yellow]warning:[/] {PARTIAL_WARNING}", soft_wrap=True, markup=True)
    for component, phases in stack.migration_timings.items():
        took = ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in phases.items())
        console.print(f"Migration of {component}: {took}")
    if outputs:
        console.print("\nOutputs:")
        for key, value in outputs.items():
            console.print(f"  {key} = {_shown(value)}", markup=False)


@app.command(epilog="Example: mlplat refresh -f stacks/quickstart.yaml   (review first, writing nothing: mlplat "
                    "refresh --preview -f stacks/quickstart.yaml)")
def refresh(file: StackFile = None, env: EnvName = None, var: VarValues = None,
            json_out: JsonFlag = False, state: StateUrl = None,
            preview_only: Annotated[bool, typer.Option("--preview", help="Show what a refresh would record and write "
                                                                         "nothing (the state is left as it is)")]
            = False,
            detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode",
                                                            help="Exit 0: no drift, 2: drift, 1: error")] = False,
            lock_timeout: LockTimeout = 0.0, force_new_state: ForceNewState = False) -> None:
    """Read every resource and record what is really there (drift)."""
    stack = _open(file, state, json_mode=json_out, lock_timeout=lock_timeout, force_new_state=force_new_state)
    drift = stack.refresh(preview=preview_only)
    if json_out:
        _emit_json({"drift": drift, **({"preview": True, "serial": stack.state.meta().serial}
                                       if preview_only else {})})
    else:
        _print_drift(drift, preview_only)
    if detailed_exitcode and drift:
        raise typer.Exit(2)


def _print_drift(drift: dict[str, Any], preview_only: bool) -> None:
    console = _console()
    if not drift:
        console.print("[green]No drift:[/] every resource matches the state.")
    elif preview_only:
        console.print(f"A refresh would record {len(drift)} resource(s) as found (nothing written; run `mlplat "
                      "refresh` to record it):")
    for address, change in drift.items():
        if change == "gone":
            console.print(f"[red]![/] {address}: deleted outside mlplat")
        else:
            for key, (before, after) in change.items():
                console.print(f"[yellow]![/] {address}: {key}: {_shown(before)} → {_shown(after)}")


@app.command(epilog="Example: mlplat output iris.url -f stacks/quickstart.yaml")
def output(
    name: Annotated[str | None, typer.Argument(help="One output, e.g. iris.url")] = None,
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    json_out: JsonFlag = False,
    state: StateUrl = None,
) -> None:
    """Show outputs: endpoint URLs, registry paths, mount targets."""
    from provisioner.errors import MlplatError

    values = _open(file, state, json_mode=True).outputs()
    if name is not None:
        if name not in values:
            raise MlplatError(f"no output named {name!r}", hint=f"outputs: {', '.join(values) or 'none yet'}")
        if json_out:
            _emit_json(values[name])
        else:
            value = values[name]
            sys.stdout.write((value if isinstance(value, str) and not _is_secret(value) else _shown(value)) + "\n")
        return
    if json_out:
        _emit_json(values)
        return
    if not values:
        _console(stderr=True).print("No outputs yet: run `mlplat apply` first.")
    for key, value in values.items():
        sys.stdout.write(f"{key} = {_shown(value)}\n")


@app.command(epilog="Example: mlplat graph -f stacks/quickstart.yaml")
def graph(file: StackFile = None, env: EnvName = None, var: VarValues = None,
          json_out: JsonFlag = False) -> None:
    """Print the resource graph as Mermaid (or nodes and direct edges as JSON)."""
    from provisioner.graph import mermaid

    stack = _open(file, json_mode=True)
    stack.validate()
    resources = stack.lower()[0].values()
    if json_out:
        _emit_json({"nodes": [{"address": r.address, "kind": r.kind, "target": r.target} for r in resources],
                    "edges": [[dep, r.address] for r in resources for dep in sorted(r.edges)]})
        return
    sys.stdout.write(mermaid(resources) + "\n")


@app.command(epilog="Example: mlplat plugins --json")
def plugins(json_out: JsonFlag = False) -> None:
    """List discovered plugins, the targets they provide and whether each target's cloud SDK is installed."""
    from rich.markup import escape

    from provisioner.plugins import plugin_listing

    listing = plugin_listing()
    if json_out:
        _emit_json({"plugins": listing,
                    "targets": {t["name"]: t["description"] for p in listing for t in p["targets"]}})
        return
    console = _console()
    for p in listing:
        offers = "".join(f"  {label}: {', '.join(p[key])}" for key, label in
                         (("catalog", "catalog for"), ("export_formats", "export formats")) if p[key])
        console.print(f"[bold]{p['name']}[/]  {p['module']}  ({p['distribution'] or 'not installed'}){offers}")
        for t in p["targets"]:
            sdk = t["sdk"]
            if not sdk["modules"]:
                status = "no SDK needed"
            elif sdk["installed"]:
                status = "SDK " + ", ".join(f"{m} {v}" for m, v in sdk["modules"].items())
            else:
                status = f"[red]SDK missing[/]: {escape(sdk['install'])}"
            console.print(f"  target [cyan]{t['name']}[/]: {escape(t['description'])}  \\[{status}]")


@app.command("import", epilog="Example: mlplat import shared.filesystem.main /data/shared -f stack.yaml")
def import_(
    address: Annotated[str, typer.Argument(help="The stack file's resource address (see mlplat graph)")],
    id: Annotated[str, typer.Argument(help="The existing object's id on its target (a name, ARN or path)")],
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    json_out: JsonFlag = False,
    state: StateUrl = None,
    lock_timeout: LockTimeout = 0.0,
) -> None:
    """Adopt an existing object into the state as ADDRESS; the next plan shows how it differs from the stack."""
    from provisioner.render import render_plan

    stack = _open(file, state, json_mode=json_out, lock_timeout=lock_timeout)
    change = stack.import_resource(address, id)
    if json_out:
        _emit_json({"imported": address, "id": id, "next": change.to_json()})
        return
    console = _console()
    console.print(f"[green]✓[/] imported {address} (id {id})")
    if change.action == "noop":
        console.print("It matches the stack file: the next apply leaves it as it is.")
        return
    from provisioner.plan import Plan

    console.print("The next apply changes it to match the stack file:")
    render_plan(console, Plan(stack.name, "", 0, [change]))


@app.command(epilog="Example: mlplat export --format json -f stacks/quickstart.yaml -o resources.json")
def export(
    format: Annotated[str, typer.Option("--format", help="Export format (see --list)")] = "json",
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout (a "
                                                                 "directory, for formats that write several files)")
                   ] = None,
    list_formats: Annotated[bool, typer.Option("--list", help="List the export formats and exit")] = False,
) -> None:
    """Write the stack's resources in another format (json, or one a plugin adds)."""
    from provisioner.errors import MlplatError
    from provisioner.export import exporter, exporters, write_directory

    if list_formats:
        for name, e in sorted(exporters().items()):
            sys.stdout.write(f"{name}\t{e.description}\n")
        return
    chosen = exporter(format)
    stack = _open(file, json_mode=True)
    stack.validate()
    text = chosen.export(stack)
    if isinstance(text, dict):  # a directory export: relative path -> text
        if out is None:
            raise MlplatError(f"export format {format} writes a directory: pass -o DIR",
                              hint=f"e.g. mlplat export --format {format} -f {file or 'STACK'} -o {format}-program")
        written = write_directory(text, out)
        err = _console(stderr=True)
        err.print(f"wrote {out}/ ({format}: {len(written)} file{'s' if len(written) != 1 else ''})", markup=False)
        for note in getattr(text, "notes", []):
            err.print(note, markup=False)
        return
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        _console(stderr=True).print(f"wrote {out} ({format})")


@app.command(epilog="Example: mlplat schema --path   (then: # yaml-language-server: $schema=<that path>)")
def schema(
    path: Annotated[bool, typer.Option("--path", help="Print the absolute path of the installed copy (for a "
                                                      "`# yaml-language-server: $schema=` line)")] = False,
    write: Annotated[bool, typer.Option("--write", help="Regenerate the installed copy and, in a source checkout, "
                                                        "schema/mlplat.schema.json")] = False,
) -> None:
    """Print the stack file's JSON Schema (for editors: yaml-language-server), target settings included."""
    from provisioner.schema import installed_path, render
    from provisioner.schema import write as write_schema

    if path:
        sys.stdout.write(f"{installed_path()}\n")
    elif write:
        for written in write_schema(render()):
            _console(stderr=True).print(f"wrote {written}", markup=False)
    else:
        sys.stdout.write(render())


@app.command(epilog="Example: mlplat fmt -f stacks/quickstart.yaml --check   (CI: exit 1 when it would change)")
def fmt(
    file: StackFile = None,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 and name the file if it would "
                                                        "change")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print the changes as a unified diff; write nothing")] = False,
) -> None:
    """Rewrite the stack file in the canonical layout, keeping every comment (it must load the same)."""
    from provisioner.fmt import format_file, write_atomically

    path = _stack_path(file)
    result = format_file(path)
    if diff:
        sys.stdout.write(result.diff())
    if check:
        if result.changed:
            sys.stdout.write(f"{path}\n")
            raise typer.Exit(1)
        return
    if diff:
        return
    if result.changed:
        write_atomically(path, result.formatted)
        sys.stdout.write(f"formatted {path}\n")
    else:
        sys.stdout.write(f"{path} is already formatted\n")



@app.command("cost", epilog="Example: mlplat cost -f stacks/quickstart.yaml --compare aws,gcp,azure")
def cost_(
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    compare: Annotated[str | None, typer.Option("--compare", help="Price the platform on each of these target "
                                                                  "types instead, side by side (e.g. aws,gcp,azure)")]
    = None,
    json_out: JsonFlag = False,
) -> None:
    """What the platform costs per hour and month, from the accelerator catalog (no credentials, no cloud calls)."""
    from provisioner import cost

    platform = cost.load_platform(_stack_path(file), *_environment())
    if compare is None:
        report = cost.estimate_platform(platform, cost.stack_target_types(platform))
        if json_out:
            _emit_json(report.to_json())
        else:
            cost.render_costs(_console(), report, items=True)
        return
    types = cost.check_types(list(dict.fromkeys(t.strip() for t in compare.split(",") if t.strip())))
    reports = {t: cost.estimate_platform(platform, {}, override=t) for t in types}
    if json_out:
        _emit_json({"compare": {t: r.to_json() for t, r in reports.items()}})
    else:
        cost.render_compare(_console(), reports)


@app.command(epilog="Example: mlplat monitor -f stacks/monitoring.yaml --once")
def monitor(
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    once: Annotated[bool, typer.Option("--once", help="Check once and exit (default: check again on the shortest "
                                                       "drift schedule, hourly or daily, until Ctrl-C)")] = False,
    since: Annotated[float, typer.Option("--since", min=0, help="Hours of captured rows to check (0: every row)")]
    = 24.0,
    interval: Annotated[float | None, typer.Option("--interval", min=1, help="Seconds between checks, instead of "
                                                                            "the drift schedule (for demos)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout (checks once)")] = False,
    state: StateUrl = None,
) -> None:
    """Check monitored endpoints: feature drift against the baseline, shadow agreement; send alerts (exit 0)."""
    import time

    from provisioner.monitoring import run as monitoring

    stack = _open(file, state, json_mode=True)
    period = interval or monitoring.schedule_s(monitoring.monitored(stack))
    console = _console()
    try:
        while True:
            report = monitoring.run(stack, since_hours=since or None)
            if json_out:
                _emit_json(report.to_json())
                return
            console.print(monitoring.render(report))
            if once:
                return
            console.print(f"[dim]next check in {period:g} s (Ctrl-C to stop)[/]")
            time.sleep(period)
    except KeyboardInterrupt:
        return
    finally:
        stack.close()


@app.command(epilog="Example: mlplat top -f stacks/quickstart.yaml --once")
def top(
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    window: Annotated[float, typer.Option("--window", min=0.1, help="Seconds each view covers (and between "
                                                                     "refreshes)")] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="One view, then exit")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout (one view)")] = False,
    state: StateUrl = None,
) -> None:
    """Utilisation, request rate, error rate and p95 latency per pool and endpoint path, from the targets' metrics."""
    from provisioner.monitoring import top as top_view

    stack = _open(file, state, json_mode=True)
    try:
        if json_out or once:
            usage = top_view.collect(stack, window)
            if json_out:
                _emit_json({"stack": stack.name, "window_s": window, **usage.to_json()})
            else:
                _console().print(top_view.render(usage, f"{stack.name}, last {window:g} s"))
            return
        import time

        def paced() -> Any:  # one view per window, also when there was nothing to watch for a window
            began = time.monotonic()
            usage = top_view.collect(stack, window)
            time.sleep(max(0.0, window - (time.monotonic() - began)))
            return usage

        console = _console()
        if not console.is_terminal:  # a pipe or a log: one view after another
            while True:
                console.print(top_view.render(paced(), f"{stack.name}, last {window:g} s"))
        from rich.live import Live
        from rich.text import Text

        with Live(Text(f"mlplat top {stack.name}: reading the first {window:g} s…"), console=console,
                  auto_refresh=False) as live:
            while True:
                live.update(top_view.render(paced(), f"{stack.name}, last {window:g} s (Ctrl-C to stop)"),
                            refresh=True)
    except KeyboardInterrupt:
        return
    finally:
        stack.close()


@app.command(epilog="Example: mlplat ui -f stacks/quickstart.yaml   (several stacks: -f a.yaml -f b.yaml, or -f "
                    "stacks/)")
def ui(
    files: Annotated[list[Path] | None, typer.Option(
        "--file", "-f", help="Stack file, or a directory of stack files; repeatable (default $MLPLAT_STACK or "
                             "./mlplat.yaml)", show_default=False)] = None,
    env: EnvName = None,
    var: VarValues = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free port)")]
    = 8420,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser (default: open one when "
                                                                  "a terminal is attached)")] = False,
    state: StateUrl = None,
) -> None:
    """A local web dashboard: platform graph, plan and apply, serving, resources, history (127.0.0.1 only)."""
    from provisioner.ui.stackfiles import stack_files

    paths = stack_files(files or [_stack_path(None)])
    from provisioner.ui.app import UiApp
    from provisioner.ui.server import serve

    environment, variables = _environment()
    app_ = UiApp(paths, state_url=state, environment=environment, variables=variables)
    console = _console()

    def announce(url: str) -> None:
        console.print(f"mlplat ui: {len(paths)} stack(s) at [bold]{url}[/]", soft_wrap=True)
        console.print("[dim]the token in the URL is this server's access key; Ctrl-C stops it[/]")
        sys.stdout.flush()

    try:
        serve(app_, port, open_browser=not no_browser and sys.stdout.isatty(), announce=announce)
    except OSError as err:
        from provisioner.errors import MlplatError

        raise MlplatError(f"cannot listen on 127.0.0.1:{port}: {err.strerror or err}",
                          hint="choose another port with --port N (0: any free port)") from None


@state_app.command("list", epilog="Example: mlplat state list -f stacks/quickstart.yaml")
def state_list(file: StackFile = None, env: EnvName = None, var: VarValues = None,
               json_out: JsonFlag = False, state: StateUrl = None) -> None:
    """List recorded resources."""
    stack = _open(file, state, json_mode=True)
    records = stack.state.resources()
    if json_out:
        meta = stack.state.meta()
        _emit_json({"serial": meta.serial, "lineage": meta.lineage,
                    "resources": [{"address": r.address, "kind": r.kind, "target": r.target, "id": r.id}
                                  for r in records.values()]})
        return
    for r in records.values():
        sys.stdout.write(f"{r.address}\t{r.kind}\t{r.id}\n")


@state_app.command("show", epilog="Example: mlplat state show shared.filesystem.main -f stack.yaml --json")
def state_show(address: str, file: StackFile = None, env: EnvName = None, var: VarValues = None,
               state: StateUrl = None, json_out: JsonFlag = False) -> None:
    """Show one recorded resource (JSON, with or without --json)."""
    from provisioner.errors import MlplatError

    record = _open(file, state, json_mode=True).state.resources().get(address)
    if record is None:
        raise MlplatError(f"no resource {address!r} in the state", hint="see `mlplat state list`")
    _emit_json(record.to_dict())


@state_app.command("rm", epilog="Example: mlplat state rm shared.filesystem.main -f stacks/quickstart.yaml")
def state_rm(address: str, file: StackFile = None, env: EnvName = None, var: VarValues = None,
             state: StateUrl = None, json_out: JsonFlag = False) -> None:
    """Forget one resource: the object stays where it is, unmanaged (`mlplat import` adopts it again)."""
    record = _open(file, state, json_mode=True).forget(address)
    if json_out:
        _emit_json({"removed": address, "id": record.id, "deposed": record.deposed})
        return
    console = _console()
    console.print(f"Removed {address} from the state; {record.kind} {record.id} still exists, unmanaged.")
    for id in record.deposed:
        console.print(f"[yellow]warning:[/] its replaced object {id} was still to be deleted: it is unmanaged too")


@state_app.command("mv", epilog="Example: mlplat state mv shared.filesystem.main data.filesystem.main -f stack.yaml")
def state_mv(
    source: Annotated[str, typer.Argument(metavar="FROM", help="The recorded address (see mlplat state list)")],
    destination: Annotated[str, typer.Argument(metavar="TO", help="Its address in the stack file now "
                                                                  "(see mlplat graph)")],
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    state: StateUrl = None,
    json_out: JsonFlag = False,
    lock_timeout: LockTimeout = 0.0,
) -> None:
    """Record a managed object under another address, e.g. after renaming its component in the stack file, so
    the next plan keeps it instead of deleting and re-creating it. The object itself is not touched."""
    record = _open(file, state, json_mode=True, lock_timeout=lock_timeout).move(source, destination)
    if json_out:
        _emit_json({"moved": source, "to": destination, "kind": record.kind, "id": record.id})
        return
    _console().print(f"Moved {source} to {destination} in the state ({record.kind} {record.id}).")


@state_app.command("migrate", epilog="Example: mlplat state migrate --to postgresql://db/mlplat -f stack.yaml")
def state_migrate(
    to: Annotated[str, typer.Option("--to", help="Destination: sqlite:///path.db, postgresql://host/db or "
                                                 "s3://bucket/prefix (must be empty)")],
    file: StackFile = None,
    env: EnvName = None,
    var: VarValues = None,
    state: StateUrl = None,
) -> None:
    """Move the stack's state to another backend, losslessly (lineage, serial, journal, secrets sealed)."""
    from provisioner.state import open_state
    from provisioner.state.migrate import migrate

    stack = _open(file, state, json_mode=True)
    with stack.locked("migrate"):
        destination = open_state(stack.name, stack.directory, url=to)
        copied = migrate(stack.state, destination)
    _console().print(f"Copied {copied} resource(s) of stack {stack.name} to {destination.url}. Point the stack "
                     f"at it: state: {{url: {destination.url}}} (or --state); the old state is left untouched.")


@state_app.command("unlock", epilog="Example: mlplat state unlock 3f2a9c1e -f stacks/quickstart.yaml")
def state_unlock(lock_id: str, file: StackFile = None, env: EnvName = None, var: VarValues = None,
                 state: StateUrl = None) -> None:
    """Remove a lock left by a process that will not come back (give the lock id from the error)."""
    from provisioner.errors import MlplatError

    if not _open(file, state, json_mode=True).state.force_unlock(lock_id):
        raise MlplatError(f"no lock with id {lock_id!r}")
    _console().print(f"Lock {lock_id} removed.")


@env_app.command("list", epilog="Example: mlplat env list -f stacks/quickstart.yaml --json")
def env_list(file: StackFile = None, json_out: JsonFlag = False) -> None:
    """List the environments (default and each <stack>.<env>.yaml), the selected one (*) and their state."""
    from provisioner import environments

    infos = environments.list_environments(_stack_path(file))
    if json_out:
        _emit_json({"environments": [i.to_json() for i in infos],
                    "selected": next(i.name for i in infos if i.selected)})
        return
    sys.stdout.write(environments.render_list(infos))


@env_app.command("new", epilog="Example: mlplat env new prod -f stacks/quickstart.yaml   (writes "
                               "stacks/quickstart.prod.yaml)")
def env_new(environment: Annotated[str, typer.Argument(metavar="ENV", help="The new environment's name")],
            file: StackFile = None) -> None:
    """Write <stack>.<ENV>.yaml with every declared variable (defaults as values, descriptions as comments)."""
    from provisioner import environments

    written = environments.new_environment(_stack_path(file), environment)
    sys.stdout.write(f"wrote {written}: edit its values, then: mlplat preview -e {environment}"
                     f"{f' -f {file}' if file else ''}\n")


@env_app.command("select", epilog="Example: mlplat env select prod -f stacks/quickstart.yaml   (back: mlplat env "
                                  "select default)")
def env_select(environment: Annotated[str, typer.Argument(metavar="ENV", help="An environment (or default)")],
               file: StackFile = None) -> None:
    """Make ENV the stack's environment for commands without -e (and without $MLPLAT_ENV)."""
    from provisioner import environments

    environments.select_environment(_stack_path(file), environment)
    sys.stdout.write(f"selected environment {environment}\n")


# -- progress and errors --------------------------------------------------------------------------------------
def _progress_printer() -> Any:
    """Event lines on stderr (warnings, recoveries, a refresh's progress) for commands that show no plan."""
    from provisioner.live import PlainLines

    return PlainLines()


def _progress(json_out: bool) -> Any:
    """What an apply, destroy or migrate shows while it runs: NDJSON (--json), a live view, or plain lines."""
    from provisioner.live import progress

    return progress(json_out=json_out)


def main() -> None:
    from provisioner.errors import MlplatError

    try:
        code = app(standalone_mode=False)  # returns the code of typer.Exit (e.g. --detailed-exitcode's 2)
        sys.exit(code if isinstance(code, int) else 0)
    except MlplatError as err:
        from rich.markup import escape

        from provisioner.secrets import redact

        console = _console(stderr=True)
        message, hint = redact(err.message), redact(err.hint) if err.hint else None
        console.print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
        if hint:
            console.print(f"[dim]hint:[/] {escape(hint)}", soft_wrap=True)
        if "--json" in sys.argv:  # one line: it ends apply --json's stream of JSON lines
            from provisioner.secrets import mask

            reasons = getattr(err, "reasons", None)
            sys.stdout.write(json.dumps(mask({"type": "error", "error": message, "hint": hint,
                                              **({"reasons": reasons} if reasons else {})}), default=str) + "\n")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        if "--json" in sys.argv:
            sys.stdout.write(json.dumps({"type": "error", "error": "interrupted", "hint": None}) + "\n")
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except Exception as err:  # click usage errors etc. (typer's click is vendored)
        handled = getattr(err, "show", None)
        if handled is not None and hasattr(err, "exit_code"):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
