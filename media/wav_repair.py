"""Make a WAV whose writer died (kill -9) playable: patch the RIFF and data sizes to the file's.

Python's ``wave`` writes the header's sizes when the file is closed; a killed process leaves them
at what was known when the header was first written (often 0), and players then see no audio.
"""

from __future__ import annotations

import struct
from pathlib import Path

HEADER = 44  # the canonical PCM header that ``wave`` writes: RIFF, fmt (16), data


def repair_wav_header(path: Path) -> bool:
    """Patch ``path`` in place if its sizes disagree with the file's; True if it is now sound."""
    try:
        with path.open("r+b") as f:
            head = f.read(HEADER)
            if len(head) < HEADER or head[:4] != b"RIFF" or head[8:16] != b"WAVEfmt " or head[36:40] != b"data":
                return False
            size = path.stat().st_size
            block_align = struct.unpack_from("<H", head, 32)[0] or 1
            data = (size - HEADER) // block_align * block_align
            riff_size, data_size = struct.unpack_from("<I", head, 4)[0], struct.unpack_from("<I", head, 40)[0]
            if (riff_size, data_size) != (data + 36, data):
                f.seek(4)
                f.write(struct.pack("<I", data + 36))
                f.seek(40)
                f.write(struct.pack("<I", data))
            return data > 0
    except OSError:
        return False
