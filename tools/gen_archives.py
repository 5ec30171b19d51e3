#!/usr/bin/env python3
"""Writes synthetic data.binance.vision 4h kline archives for benchmarks.

    python3 tools/gen_archives.py OUT_DIR [--symbols 200] [--months 12] [--year 2024] [--seed 1]

Layout (the same as data.binance.vision):

    OUT_DIR/data.binance.vision/futures/um/monthly/klines/SYMBOL/4h/SYMBOL-4h-YYYY-MM.zip
    OUT_DIR/data.binance.vision/futures/um/monthly/klines/SYMBOL/4h/SYMBOL-4h-YYYY-MM.zip.CHECKSUM

Each zip holds one deflated CSV, SYMBOL-4h-YYYY-MM.csv, with the header row
and one row per 4h candle of the month; the CHECKSUM file is
`<sha256 hex>  <zip name>` without a trailing newline, like the real ones.

Values look like real USD-M 4h klines: prices with 6 decimals from a random
walk (open = previous close, low <= min(open, close), max(open, close) <=
high), integer base volumes, quote volume = volume x a price inside the
candle with 6 decimals, integer trade counts, taker-buy volumes a share of
the totals, close_time = open_time + 4h - 1 ms. The output is deterministic
for a given seed. 200 symbols x 12 months of 2024 = 2,400 archives,
439,200 candles.

Python 3 standard library only.
"""

import argparse
import calendar
import hashlib
import io
import os
import random
import sys
import zipfile

HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
H4_MS = 4 * 3600 * 1000
SCALE = 1_000_000  # prices and quote volumes carry 6 decimals

# Real USD-M names first, then generated ones (A-Z only, "USDT" quoted).
REAL = (
    "BTC ETH BNB SOL XRP DOGE ADA TRX AVAX LINK DOT TON SHIB LTC BCH NEAR UNI APT ICP FIL "
    "ETC ATOM ARB OP INJ SUI SEI TIA STX IMX RNDR GRT AAVE MKR LDO FET RUNE ALGO FTM SAND"
).split()


def symbol_names(n):
    names = [b + "USDT" for b in REAL[:n]]
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    i = 0
    while len(names) < n:
        # Deterministic 3-4 letter bases: QAB, QAC, ... (prefixes not used by REAL).
        a, b, c = letters[(i // 676) % 26], letters[(i // 26) % 26], letters[i % 26]
        base = "Q" + a + b + c if i >= 676 else "Q" + b + c
        i += 1
        sym = base + "USDT"
        if sym not in names:
            names.append(sym)
    return names


def fmt6(m):
    """An integer number of millionths as Binance prints it: '0.043680'."""
    return "%d.%06d" % divmod(m, SCALE)


class Series:
    """One symbol's random walk, carried across months."""

    def __init__(self, rng):
        self.rng = rng
        # Price levels from 0.001 to ~60,000 (in millionths), spread over symbols.
        decades = rng.uniform(-3.0, 4.8)
        self.close = max(1000, int(10 ** decades * SCALE))
        self.base_volume = int(rng.uniform(2e4, 5e6) / max(10 ** decades, 0.01) * 50)
        self.base_volume = max(self.base_volume, 50)
        self.trades_per_unit = rng.uniform(0.0002, 0.01)
        self.vol = rng.uniform(0.006, 0.03)  # per-candle volatility

    def candle(self, open_time):
        rng = self.rng
        o = self.close
        c = max(1000, int(o * (1.0 + rng.gauss(0.0, self.vol))))
        hi, lo = max(o, c), min(o, c)
        h = hi + int(hi * abs(rng.gauss(0.0, self.vol * 0.6)))
        l = max(1, lo - int(lo * abs(rng.gauss(0.0, self.vol * 0.6))))
        volume = max(1, int(self.base_volume * rng.lognormvariate(0.0, 0.5)))
        vwap = rng.uniform(l, h)  # millionths
        quote = int(volume * vwap)  # millionths of quote asset
        share = rng.uniform(0.42, 0.58)
        taker = int(volume * share)
        taker_quote = int(quote * share)
        trades = max(1, int(volume * self.trades_per_unit * rng.uniform(0.8, 1.2)) + rng.randrange(50, 500))
        self.close = c
        return "%d,%s,%s,%s,%s,%d,%d,%s,%d,%d,%s,0" % (
            open_time,
            fmt6(o),
            fmt6(h),
            fmt6(l),
            fmt6(c),
            volume,
            open_time + H4_MS - 1,
            fmt6(quote),
            trades,
            taker,
            fmt6(taker_quote),
        )


def month_starts(year, months):
    y, m = year, 1
    for _ in range(months):
        yield y, m
        m += 1
        if m > 12:
            y, m = y + 1, 1


def write_archive(dir_, symbol, y, m, rows):
    stem = "%s-4h-%04d-%02d" % (symbol, y, m)
    zip_name = stem + ".zip"
    text = HEADER + "\n" + "\n".join(rows) + "\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(stem + ".csv", date_time=(y, m, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, text)
    data = buf.getvalue()
    with open(os.path.join(dir_, zip_name), "wb") as f:
        f.write(data)
    with open(os.path.join(dir_, zip_name + ".CHECKSUM"), "w") as f:
        f.write("%s  %s" % (hashlib.sha256(data).hexdigest(), zip_name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--symbols", type=int, default=200)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--year", type=int, default=2024)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    root = os.path.join(args.out, "data.binance.vision", "futures", "um", "monthly", "klines")
    archives = candles = 0
    for symbol in symbol_names(args.symbols):
        series = Series(random.Random("%d/%s" % (args.seed, symbol)))
        dir_ = os.path.join(root, symbol, "4h")
        os.makedirs(dir_, exist_ok=True)
        for y, m in month_starts(args.year, args.months):
            start = calendar.timegm((y, m, 1, 0, 0, 0)) * 1000
            days = calendar.monthrange(y, m)[1]
            rows = [series.candle(start + k * H4_MS) for k in range(days * 6)]
            write_archive(dir_, symbol, y, m, rows)
            archives += 1
            candles += len(rows)
    print("wrote %d archives, %d candles under %s" % (archives, candles, root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
