package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		UsageText: "marvelo completion bash|zsh",
		Description: `Prints a script that completes marvelo's commands and flags in bash or zsh: a command's
flags as --name (after - or --), its subcommands, else file names. The script asks marvelo
itself (marvelo completion complete -- WORDS...), so it stays right as commands change.

Example:
   source <(marvelo completion bash)
   marvelo completion zsh > "${fpath[1]}/_marvelo"`,
		Action: func(c *cli.Context) error {
			if c.Args().First() == "complete" { // the scripts' question: the words for the word being typed
				words := c.Args().Tail()
				if len(words) > 0 && words[0] == "--" {
					words = words[1:]
				}
				completeWords(c.App.Writer, c.App, words)
				return nil
			}
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

// The scripts hand marvelo the words typed after the program's name, the one being typed last,
// and offer what it prints (completeWords), else file names. They do not use urfave/cli's
// --generate-bash-completion: with the word "-" or "--" before it, it printed the usage error
// (whose words offered "-generate-bash-completion") or nothing at all.
const bashCompletion = `# bash completion for PROG
_PROG_complete() {
	local cur="${COMP_WORDS[COMP_CWORD]}" opts
	COMPREPLY=()
	opts=$("${COMP_WORDS[0]}" completion complete -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
	COMPREPLY=($(compgen -W "$opts" -- "$cur"))
	if [[ ${#COMPREPLY[@]} -eq 0 && "$cur" != -* ]]; then
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
	return 0
}
complete -o bashdefault -o default -F _PROG_complete PROG
`

const zshCompletion = `#compdef PROG
_PROG() {
	local -a opts
	opts=("${(@f)$(${words[1]} completion complete -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
	if [[ -n "${opts[1]}" ]]; then
		compadd -a opts
	else
		_files
	fi
}
compdef _PROG PROG
`

// completeWords prints, one a line, what may stand for the last of words (the word being typed)
// after the others: the flags of the command the words name, as --name (-x for a one-letter
// alias), when it starts with "-"; else that command's subcommands. Hidden flags and commands
// are never offered, nor urfave/cli's --generate-bash-completion.
func completeWords(w io.Writer, app *cli.App, words []string) {
	if len(words) == 0 {
		words = []string{""}
	}
	cur := words[len(words)-1]
	var cmd *cli.Command
	cmds := app.Commands
	for _, word := range words[:len(words)-1] {
		if strings.HasPrefix(word, "-") {
			continue
		}
		sub := findCommand(cmds, word)
		if sub == nil {
			break // a positional argument: the command is named
		}
		cmd, cmds = sub, sub.Subcommands
	}
	var out []string
	if strings.HasPrefix(cur, "-") {
		flags, help := app.Flags, !app.HideHelp
		if cmd != nil {
			flags, help = cmd.Flags, !cmd.HideHelp
		}
		if help {
			flags = append(flags[:len(flags):len(flags)], cli.HelpFlag)
		}
		if cmd == nil && !app.HideVersion && app.Version != "" {
			flags = append(flags, cli.VersionFlag)
		}
		seen := map[string]bool{}
		for _, f := range flags {
			if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
				continue
			}
			for _, n := range f.Names() {
				word := "--" + n
				if len(n) == 1 {
					word = "-" + n
				}
				if n != cli.BashCompletionFlag.Names()[0] && !seen[word] {
					seen[word] = true
					out = append(out, word)
				}
			}
		}
	} else {
		for _, c := range cmds {
			if !c.Hidden {
				out = append(out, c.Name)
			}
		}
	}
	for _, word := range out {
		if strings.HasPrefix(word, cur) {
			fmt.Fprintln(w, word)
		}
	}
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.Name == name || slices.Contains(c.Aliases, name) {
			return c
		}
	}
	return nil
}
