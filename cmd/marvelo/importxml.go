package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/xmlimport"
)

// importXMLCommand converts an old MARVELO XML topology into a pipeline document.
func importXMLCommand() *cli.Command {
	return &cli.Command{
		Name:      "import-xml",
		Usage:     "convert an old MARVELO XML topology into a pipeline document",
		UsageText: "marvelo import-xml TOPOLOGY.xml [-o pipeline.json|pipeline.cbor] [--name NAME] [--ip-attr pi_id]",
		Description: `Reads an XML topology of the original MARVELO ("-" reads standard input) and writes the
pipeline document it describes, as JSON (or CBOR when -o ends in .cbor); without -o the JSON
goes to standard output.

  <root>
    <node pi_id="192.168.4.1">
      <job executable="python3 sum.py" path="sum">
        <parameter param="--scale 2"/>
        <input  pipe_id="1" block_size="8" block_count="5"/>
        <output pipe_id="2" block_size="8"/>

Each job becomes an executable job in fd mode: the first word of executable is exec.path, the
other words and the parameters are exec.params, path is exec.dependencies, and the node's
address is the job's preferred node. Jobs are numbered in document order. Each pipe gets
codec bytes with its block_size and block_count (a missing value is 1; the two ends must
agree). The result is validated as "marvelo validate" does; problems exit with code 2.

Example:
   marvelo import-xml network.xml -o network.json --ip-attr ip
   marvelo run network.json`,
		Flags: []cli.Flag{
			outputFlag("write the document to `FILE` (.json, or .cbor for CBOR) instead of standard output"),
			&cli.StringFlag{Name: "name", Usage: "pipeline `NAME` (default: the XML file's name without extension)"},
			&cli.StringFlag{Name: "ip-attr", Value: "pi_id", Usage: "`ATTRIBUTE` of a node element that holds its address"},
			&cli.BoolFlag{Name: "no-validate", Usage: "write the document even if it fails validation"},
		},
		Action: func(c *cli.Context) error {
			name, data, err := readDocument(c)
			if err != nil {
				return err
			}
			pname := c.String("name")
			if pname == "" {
				pname = xmlimport.DefaultName
				if name != "<stdin>" {
					pname = xmlimport.NameFromFile(name)
				}
			}
			p, err := xmlimport.Convert(bytes.NewReader(data), xmlimport.Options{
				Name: pname, File: name, IPAttr: c.String("ip-attr"),
			})
			if err != nil {
				return cliutil.UsageError(err)
			}
			if !c.Bool("no-validate") {
				if err := pipeline.Validate(p, pipeline.ValidateOptions{}); err != nil {
					return cliutil.UsageError(fmt.Errorf("%w\n%s: the converted document is not a valid pipeline (use --no-validate to write it anyway)",
						prefixLines(name, err), name))
				}
			}
			out := c.String("output")
			var doc []byte
			if strings.EqualFold(filepath.Ext(out), ".cbor") {
				doc, err = pipeline.EncodeCBOR(p)
			} else {
				doc, err = pipeline.EncodeJSON(p)
			}
			if err != nil {
				return cliutil.Failure(err)
			}
			if err := writeOutput(c, out, doc); err != nil {
				return err
			}
			if out != "" && out != "-" {
				fmt.Fprintf(c.App.ErrWriter, "%s: %s, %s → %s (pipeline %s)\n", name,
					plural(len(p.Jobs), "job"), plural(len(p.Pipes), "pipe"), out, p.Name)
			}
			return nil
		},
	}
}
