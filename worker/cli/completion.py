"""Shell completion scripts for ``bertjobs``, generated from its argparse parser (no extra dependency).

Each command path (``""``, ``"jobs"``, ``"jobs show"``...) maps to the words that may follow it: its
subcommands, its options and its positional choices. The scripts walk the words typed so far to find the
path, then offer that path's words.
"""
from __future__ import annotations

import argparse


def command_words(parser: argparse.ArgumentParser, path: str = "") -> dict[str, list[str]]:
    words: list[str] = []
    table: dict[str, list[str]] = {path: words}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                words.append(name)
                table.update(command_words(child, f"{path} {name}".strip()))
        elif action.option_strings:
            if action.help != argparse.SUPPRESS:
                words.extend(action.option_strings)
        elif action.choices:
            words.extend(str(c) for c in action.choices)
    return table


def _case_arms(table: dict[str, list[str]], quote_open: str) -> str:
    return "\n".join(f'        {quote_open}"{path}") words="{" ".join(words)}" ;;' for path, words in table.items())


def bash_script(parser: argparse.ArgumentParser) -> str:
    table = command_words(parser)
    paths = "|".join(f'"{p}"' for p in table if p)
    return f'''# bash completion for bertjobs: source <(bertjobs completion bash)
_bertjobs() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" cmdpath="" cand words i
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ -z "$cmdpath" ]]; then cand="${{COMP_WORDS[i]}}"; else cand="$cmdpath ${{COMP_WORDS[i]}}"; fi
        case "$cand" in
            {paths}) cmdpath="$cand" ;;
        esac
    done
    case "$cmdpath" in
{_case_arms(table, "")}
        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _bertjobs bertjobs
'''


def zsh_script(parser: argparse.ArgumentParser) -> str:
    table = command_words(parser)
    paths = "|".join(f'"{p}"' for p in table if p)
    return f'''#compdef bertjobs
# zsh completion for bertjobs: after compinit, source <(bertjobs completion zsh)
_bertjobs() {{
    local cmdpath="" cand i
    for ((i = 2; i < CURRENT; i++)); do
        if [[ -z "$cmdpath" ]]; then cand="${{words[i]}}"; else cand="$cmdpath ${{words[i]}}"; fi
        case "$cand" in
            ({paths}) cmdpath="$cand" ;;
        esac
    done
    local -a offer
    case "$cmdpath" in
{_case_arms(table, "(").replace(' words="', ' offer=(').replace('" ;;', ') ;;')}
    esac
    if (( ${{#offer}} )); then compadd -- $offer; else _files; fi
}}
compdef _bertjobs bertjobs
'''
