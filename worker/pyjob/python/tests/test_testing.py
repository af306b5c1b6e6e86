"""marvelo.testing: emulate's shapes and its command line."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

TESTS = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(TESTS)
sys.path.insert(0, PACKAGE_ROOT)
sys.path.insert(0, TESTS)

import fixture_jobs as fj  # noqa: E402
from marvelo import PythonJob  # noqa: E402
from marvelo.cbor import EncodeError  # noqa: E402
from marvelo.codecs import CodecError  # noqa: E402
from marvelo.testing import emulate  # noqa: E402

try:
    import numpy as np
except ImportError:
    np = None


class EmulateTest(unittest.TestCase):
    def test_the_originals_shape(self):
        job = emulate(fj.StarJob())
        self.assertEqual(job("*", 1, 2, 3), [6, 6, "*"])
        self.assertEqual(job("+", 4, 5, 6), [15, 15, "+"])
        with self.assertRaisesRegex(ValueError, "has 4 input\\(s\\), got 2"):
            job("+", 4)

    def test_a_class_is_built_without_arguments(self):
        self.assertEqual(emulate(fj.Forward)(5), [5])

    def test_values_go_through_the_codecs(self):
        self.assertEqual(emulate(fj.Forward())((1, 2)), [[1, 2]])  # cbor: a tuple arrives as a list
        res = emulate(fj.Forward(), inputs=[[{"a": (1,)}]], input_pipes=["json"], output_pipes=[{"codec": "json"}])
        self.assertEqual(res.outputs, [[{"a": [1]}]])
        with self.assertRaisesRegex(CodecError, "NaN is not valid JSON"):
            emulate(fj.NaNJob(), output_pipes=["json"])(1)
        with self.assertRaisesRegex(EncodeError, "job 0 \\(Unencodable\\): cannot encode a value of type set "
                                                 "for output pipe 0 \\(cbor\\)"):
            emulate(fj.Unencodable())(1)

    def test_bytes_pipes(self):
        p = {"codec": "bytes", "block_size": 4}
        self.assertEqual(emulate(fj.Forward(), inputs=[[b"abcd"]], input_pipes=[p], output_pipes=[p]).outputs,
                         [[b"abcd"]])
        with self.assertRaisesRegex(CodecError, "got 3 bytes for block_size 4"):
            emulate(fj.Forward(), input_pipes=[p])(b"abc")

    @unittest.skipIf(np is None, "numpy is not importable")
    def test_bytes_with_dtype(self):
        p = {"codec": "bytes", "block_size": 8, "dtype": "<f4"}
        res = emulate(fj.InPlace(), inputs=[[np.array([1.5, 2], "<f4")]], input_pipes=[p], output_pipes=[p])
        self.assertEqual(res.outputs[0][0].tolist(), [3.0, 4.0])

    def test_number_of_outputs(self):
        self.assertEqual(len(emulate(fj.Forward(outputs=3))(1)), 3)
        self.assertEqual(len(emulate(fj.Forward(outputs=[1, 2]))(1)), 2)
        self.assertEqual(emulate(fj.StarJob())("*", 1), [1, 1, "*"])  # from the tuple
        self.assertEqual(emulate(fj.Forward())(1), [1])

    def test_heads_and_finished_of_the_result(self):
        res = emulate(fj.FinishAt(at=2), inputs=[[1, 2, 3]])
        self.assertEqual([int(h) for h in res.heads[0]], [0, 0x20])
        self.assertTrue(res.finished)
        self.assertFalse(emulate(fj.Forward(), inputs=[[1]]).finished)

    def test_inputs_of_different_lengths_are_an_error(self):
        with self.assertRaisesRegex(ValueError, "different numbers of rounds: \\[2, 1\\]"):
            emulate(fj.SumJob(), inputs=[[1, 2], [1]]).outputs

    def test_rounds_limit_for_given_inputs(self):
        self.assertEqual(emulate(fj.Forward(), inputs=[[1, 2, 3]], rounds=2).outputs, [[1, 2]])

    def test_user_exceptions_reach_the_test_unchanged(self):
        with self.assertRaises(ZeroDivisionError):
            emulate(fj.Divide())(0)

    def test_block_count_needs_a_list_per_round(self):
        with self.assertRaisesRegex(ValueError, "block_count 2: give a list of 2 values per round"):
            emulate(fj.BlockSum(), input_pipes=[{"block_count": 2}])(1)

    def test_setup_sees_its_outputs(self):
        class Outputs(PythonJob):
            def setup(self, *args, **kwargs):
                self.n = len(self.outputs)

            def run(self):
                self.finish()
                return self.n

        self.assertEqual(emulate(Outputs()).outputs, [[1]])
        self.assertEqual(emulate(Outputs(), output_pipes=[None, None]).outputs, [[2], [2]])


class CLITest(unittest.TestCase):
    def cli(self, *args, cwd=TESTS):
        env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT)
        return subprocess.run([sys.executable, "-m", "marvelo.testing"] + list(args), cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=60)

    def test_prints_each_rounds_outputs_as_a_json_line(self):
        p = self.cli("fixture_jobs:Scale", "--args", '{"factor": 3}', "--input", "[1, 2, 3]")
        self.assertEqual((p.returncode, p.stdout), (0, "[3]\n[6]\n[9]\n"), p.stderr)

    def test_sources_inputs_from_files_and_options(self):
        p = self.cli("fixture_jobs:CountTwo", "--args", '{"n": 3}')
        self.assertEqual(p.stdout, "[1, 3]\n[2, 2]\n[3, 1]\n")
        p = self.cli("fixture_jobs:CountTwo", "--args", '{"n": 30}', "--rounds", "2")
        self.assertEqual(p.stdout, "[1, 30]\n[2, 29]\n")
        with tempfile.TemporaryDirectory() as d:
            lines, listed = os.path.join(d, "a.jsonl"), os.path.join(d, "b.json")
            with open(lines, "w") as f:
                f.write("1\n2\n")
            with open(listed, "w") as f:
                json.dump([10, 20], f)
            p = self.cli("fixture_jobs:SumJob", "--input-file", lines, "--input-file", listed, "--codec", "json",
                         "--outputs", "2")
        self.assertEqual((p.returncode, p.stdout), (0, "[11, 11]\n[22, 22]\n"), p.stderr)

    def test_skipped_outputs_are_null(self):
        p = self.cli("fixture_jobs:SkipOdd", "--input", "[1, 2]")
        self.assertEqual(p.stdout, "[null]\n[2]\n")

    def test_failure_exits_1_with_the_error(self):
        p = self.cli("fixture_jobs:Divide", "--input", "[5, 0, 1]")
        self.assertEqual((p.returncode, p.stdout), (1, "[2]\n"))
        self.assertIn("job 0 (Divide): failed in round 2: ZeroDivisionError", p.stderr)
        self.assertIn("return 10 // x", p.stderr)
        p = self.cli("nope:Job", "--input", "[1]")
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot import module nope", p.stderr)
        p = self.cli("fixture_jobs:Forward", "--input", "[1")
        self.assertEqual(p.returncode, 1)
        self.assertIn("bad JSON argument", p.stderr)


if __name__ == "__main__":
    unittest.main()
