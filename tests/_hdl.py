"""Icarus Verilog driver of the hex-file tests: a testbench that $readmemh's a file and prints
every value."""
import shutil
import subprocess

import numpy as np

HAVE_IVERILOG = shutil.which("iverilog") is not None and shutil.which("vvp") is not None
SKIP_REASON = "needs Icarus Verilog (apt-get install iverilog; .ci/run installs it for CI)"


def simulate(tmp_path, name: str, hexfile: str, n: int, bits: int, signed: bool,
              per_word: int = 1) -> np.ndarray:
    """Run a testbench that $readmemh's the file and $display's every value."""
    words = (n + per_word - 1) // per_word
    w = bits * per_word
    show = "$signed(v)" if signed else "v"
    tb = tmp_path / f"{name}.v"
    tb.write_text(f"""
module tb;
  reg [{w - 1}:0] mem [0:{words - 1}];
  reg [{bits - 1}:0] v;
  integer i, j;
  initial begin
    $readmemh("{hexfile}", mem);
    for (i = 0; i < {words}; i = i + 1)
      for (j = 0; j < {per_word}; j = j + 1)
        if (i * {per_word} + j < {n}) begin
          v = mem[i][{bits} * j +: {bits}];
          $display("%0d", {show});
        end
    $finish;
  end
endmodule
""")
    exe = tmp_path / f"{name}.vvp"
    subprocess.run(["iverilog", "-g2005", "-o", str(exe), str(tb)], check=True, cwd=tmp_path)
    out = subprocess.run(["vvp", "-n", str(exe)], check=True, capture_output=True, text=True,
                         cwd=tmp_path).stdout
    return np.array([int(v) for v in out.split() if v.lstrip("-").isdigit()], np.int64)
