package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		UsageText: "marvelo completion bash|zsh",
		Description: `Prints a script that completes marvelo's commands and flags in bash or zsh; it asks marvelo
itself (--generate-bash-completion), so it stays right as commands change. The same script
works for marvelo-broker and marvelo-worker with PROG set to their name.

Example:
   source <(marvelo completion bash)
   marvelo completion zsh > "${fpath[1]}/_marvelo"`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cliutil.UsageError(fmt.Errorf("completion: want bash or zsh"))
			}
			prog := c.App.Name
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(c.App.Writer, strings.ReplaceAll(bashCompletion, "PROG", prog))
			case "zsh":
				fmt.Fprint(c.App.Writer, strings.ReplaceAll(zshCompletion, "PROG", prog))
			default:
				return cliutil.UsageError(fmt.Errorf("completion: unknown shell %q (want bash or zsh)", c.Args().First()))
			}
			return nil
		},
	}
}

const bashCompletion = `# bash completion for PROG
_PROG_complete() {
	local cur opts
	COMPREPLY=()
	cur="${COMP_WORDS[COMP_CWORD]}"
	if [[ "$cur" == "-"* ]]; then
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
	else
		opts=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
	fi
	COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	[[ ${#COMPREPLY[@]} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))
	return 0
}
complete -o bashdefault -o default -F _PROG_complete PROG
`

const zshCompletion = `#compdef PROG
_PROG() {
	local -a opts
	local cur=${words[-1]}
	if [[ "$cur" == "-"* ]]; then
		opts=("${(@f)$(${words[@]:0:#words[@]-1} "$cur" --generate-bash-completion 2>/dev/null)}")
	else
		opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
	fi
	if [[ "${opts[1]}" != "" ]]; then
		_describe 'values' opts
	else
		_files
	fi
}
compdef _PROG PROG
`
