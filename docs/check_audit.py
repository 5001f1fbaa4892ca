#!/usr/bin/env python3
"""Check a pollwatch audit-chain export against a published head.

Written from docs/review.md ("The audit chain") alone, and following it:

1. the positions of AUDIT_JSONL are 1, 2, 3, ... in order, with no gap;
2. each hash is SHA-256 of the previous hash (64 lower-case hex characters,
   64 zeros before the first entry), a line feed and the entry text as UTF-8,
   hashed exactly as exported, never rebuilt;
3. the published head holds: entry --entries N exists and its hash is --head
   (the export may be longer); without --entries, the last hash is --head;
4. with REPORTS_JSONL, every line's audit_position names an entry whose hash
   is its audit_hash, that entry is a `revision` entry with the line's seq,
   report_id and revision, and SHA-256 of the line's payload (UTF-8) is the
   entry's payload_sha256.

Each entry must also be a JSON object with the documented fields of its type
in the documented order.  Both files are streamed, split on line feeds only.

Usage: check_audit.py AUDIT_JSONL [REPORTS_JSONL] --head HASH [--entries N]
Exit 0 when everything holds, 1 naming the first failure, 2 for usage errors
or unreadable files.  Python 3.9+ standard library only.
"""

import argparse
import hashlib
import json
import sys

ZERO_HASH = "0" * 64
HEX = frozenset("0123456789abcdef")

# The fields of each entry type, in the order the document gives them.
FIELDS = {
    "revision": ["type", "seq", "report_id", "revision", "channel", "sender",
                 "received_at_us", "payload_sha256"],
    "conflict": ["type", "report_id", "revision", "content_hash", "sender",
                 "received_at_us", "payload_sha256"],
    "review": ["type", "id", "mission", "action", "report_id", "revision",
               "station", "contest", "chosen", "from_state", "to_state",
               "reviewer", "reason", "at_us"],
}
KIND = {"revision": 1, "conflict": 2, "review": 3}
KIND_NAME = {v: k for k, v in KIND.items()}

# What is kept per entry when reports are checked: kind (1 byte), the entry's
# hash (32), its payload_sha256 (32) and a digest of (seq, report_id, revision)
# (16), packed in one bytearray indexed by position.
RECORD = 1 + 32 + 32 + 16
NO_DIGEST = bytes(32)


class Failure(Exception):
    """A check that does not hold (exit 1)."""


class Unreadable(Exception):
    """Input that cannot be read at all (exit 2)."""


class Pairs(list):
    """A JSON object as its (key, value) pairs, in text order."""


def pairs_hook(pairs):
    return Pairs(pairs)


def unique_hook(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError("duplicate key " + json.dumps(key))
        seen.add(key)
    return dict(pairs)


def show(value, limit=80):
    """A value as one short line of text for a message."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_int(value):
    return type(value) is int  # not bool


def is_hex64(value):
    return isinstance(value, str) and len(value) == 64 and set(value) <= HEX


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def utf8(text, where, what):
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise Failure(f"{where}: {what} is not valid Unicode text (a lone surrogate)")


def key_digest(seq, report_id, revision):
    text = json.dumps([seq, report_id, revision], ensure_ascii=True)
    return hashlib.blake2b(text.encode("ascii"), digest_size=16).digest()


def open_binary(path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise Unreadable(f"cannot read {path}: {e.strerror or e}")


def numbered_lines(handle, path):
    """Yield (line number, text) splitting on line feeds only."""
    number = 0
    try:
        for raw in handle:  # binary files split on b"\n" and nothing else
            number += 1
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise Failure(f"{path} line {number}: not valid UTF-8 ({e.reason} at byte {e.start})")
            yield number, text
    except OSError as e:
        raise Unreadable(f"cannot read {path} after line {number}: {e.strerror or e}")


def json_object(text, where):
    if not text.strip():
        raise Failure(f"{where}: the line is empty")
    try:
        value = json.loads(text, object_pairs_hook=unique_hook)
    except ValueError as e:
        raise Failure(f"{where}: not a JSON object ({e})")
    if not isinstance(value, dict):
        raise Failure(f"{where}: not a JSON object")
    return value


def parse_entry(entry, where):
    """The entry text as its (key, value) pairs, checked for shape."""
    try:
        pairs = json.loads(entry, object_pairs_hook=pairs_hook)
    except ValueError as e:
        raise Failure(f"{where}: the entry is not JSON ({e})")
    if not isinstance(pairs, Pairs):
        raise Failure(f"{where}: the entry is not a JSON object")
    keys = [k for k, _ in pairs]
    kind = pairs[0][1] if keys and keys[0] == "type" else None
    if not isinstance(kind, str) or kind not in FIELDS:
        raise Failure(f"{where}: the entry's first field is not a `type` of revision, conflict or review "
                      f"(it begins {show(pairs[0] if pairs else None)})")
    if keys != FIELDS[kind]:
        raise Failure(f"{where}: a {kind} entry with fields {','.join(keys)}; "
                      f"the document says {','.join(FIELDS[kind])}")
    fields = dict(pairs)
    if kind == "revision":
        for name in ("seq", "revision"):
            if not is_int(fields[name]):
                raise Failure(f"{where}: the revision entry's {name} is {show(fields[name])}, not an integer")
        if not isinstance(fields["report_id"], str):
            raise Failure(f"{where}: the revision entry's report_id is {show(fields['report_id'])}, not a string")
        if not is_hex64(fields["payload_sha256"]):
            raise Failure(f"{where}: the revision entry's payload_sha256 is {show(fields['payload_sha256'])}, "
                          "not 64 lower-case hex characters")
    return kind, fields


def check_chain(handle, path, head_hash, head_entries, keep):
    """Checks 1-3.  Returns (count, last hash, packed records or None)."""
    records = bytearray() if keep else None
    previous = ZERO_HASH
    count = 0
    head_seen_at = 0 if head_hash == ZERO_HASH else None
    if head_entries == 0 and head_hash != ZERO_HASH:
        raise Failure(f"the published head is 0 entries, whose hash is {ZERO_HASH}, not {head_hash}")
    for number, text in numbered_lines(handle, path):
        where = f"{path} line {number}"
        line = json_object(text, where)
        position = line.get("position")
        if not is_int(position):
            raise Failure(f"{where}: position is {show(position)}, expected {number}")
        if position != number:
            raise Failure(f"{where}: holds position {position}, expected {number} "
                          "(positions must be 1, 2, 3, ... with no gap)")
        where = f"entry {number}"
        given, entry = line.get("hash"), line.get("entry")
        if not isinstance(given, str):
            raise Failure(f"{where}: hash is {show(given)}, not a string")
        if not isinstance(entry, str):
            raise Failure(f"{where}: entry is {show(entry)}, not a string")
        computed = sha256_hex(previous.encode("ascii") + b"\n" + utf8(entry, where, "the entry"))
        if given != computed:
            raise Failure(f"{where}: hash {show(given)} does not follow from the previous hash and "
                          f"this entry's text (recomputed {computed})")
        kind, fields = parse_entry(entry, where)
        if number == head_entries and computed != head_hash:
            raise Failure(f"{where}: its hash is {computed}, not the published head {head_hash}")
        if head_seen_at is None and computed == head_hash:
            head_seen_at = number
        if records is not None:
            records.append(KIND[kind])
            records += bytes.fromhex(computed)
            if kind == "revision":
                records += bytes.fromhex(fields["payload_sha256"])
                records += key_digest(fields["seq"], fields["report_id"], fields["revision"])
            else:
                records += NO_DIGEST + NO_DIGEST[:16]
        previous = computed
        count = number
    if head_entries is None:
        if previous != head_hash:
            hint = ""
            if head_seen_at is not None:
                hint = f" (the published head is this export's entry {head_seen_at}; pass --entries {head_seen_at})"
            raise Failure(f"entry {count}: the chain's last hash is {previous}, not the published head "
                          f"{head_hash}{hint}")
    elif count < head_entries:
        raise Failure(f"entry {head_entries}: missing: the export has {count} entries, "
                      f"the published head {head_entries}")
    return count, previous, records


def entry_at(path, position):
    """The fields of entry `position`, read again (only to explain a failure)."""
    try:
        with open_binary(path) as handle:
            for number, text in numbered_lines(handle, path):
                if number == position:
                    return parse_entry(json.loads(text)["entry"], f"entry {position}")[1]
    except (Failure, Unreadable, ValueError, KeyError):
        pass
    return None


def check_reports(handle, path, audit_path, count, records):
    """Check 4.  Returns the number of report lines."""
    lines = 0
    for number, text in numbered_lines(handle, path):
        where = f"{path} line {number}"
        line = json_object(text, where)
        for name in ("seq", "report_id", "revision", "payload", "audit_position", "audit_hash"):
            if name not in line:
                raise Failure(f"{where}: no `{name}` field")
        seq, report_id, revision = line["seq"], line["report_id"], line["revision"]
        where += f" (seq {show(seq)})"
        position, audit_hash = line["audit_position"], line["audit_hash"]
        if position is None:
            raise Failure(f"{where}: audit_position is null: the chain has no entry for this revision")
        if not is_int(position):
            raise Failure(f"{where}: audit_position is {show(position)}, not an integer")
        if not 1 <= position <= count:
            raise Failure(f"{where}: audit_position {position} names no entry (the chain has {count})")
        at = (position - 1) * RECORD
        record = records[at:at + RECORD]
        entry_hash = record[1:33].hex()
        if audit_hash != entry_hash:
            raise Failure(f"{where}: audit_hash {show(audit_hash)} is not the hash of entry {position} ({entry_hash})")
        kind = record[0]
        if kind != KIND["revision"]:
            raise Failure(f"{where}: entry {position} is a {KIND_NAME[kind]} entry, not a revision entry")
        if key_digest(seq, report_id, revision) != bytes(record[65:81]):
            fields = entry_at(audit_path, position) or {}
            differ = [n for n, v in (("seq", seq), ("report_id", report_id), ("revision", revision))
                      if n in fields and fields[n] != v] or ["seq, report_id or revision"]
            detail = ", ".join(f"{n} {show(fields[n])} there, {show(line[n])} here" if n in fields else n
                               for n in differ)
            raise Failure(f"{where}: entry {position} records another revision ({detail})")
        payload = line["payload"]
        if not isinstance(payload, str):
            raise Failure(f"{where}: payload is {show(payload)}, not a string")
        payload_hash = sha256_hex(utf8(payload, where, "the payload"))
        if payload_hash != record[33:65].hex():
            raise Failure(f"{where}: SHA-256 of the payload is {payload_hash}, but entry {position} "
                          f"records payload_sha256 {record[33:65].hex()}")
        lines = number
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Check a pollwatch audit-chain export (docs/review.md) against a published head.")
    parser.add_argument("audit", metavar="AUDIT_JSONL", help="the audit.jsonl export")
    parser.add_argument("reports", metavar="REPORTS_JSONL", nargs="?",
                        help="the reports.jsonl export, to check against the chain")
    parser.add_argument("--head", metavar="HASH", required=True, help="the published head hash")
    parser.add_argument("--entries", metavar="N", type=int,
                        help="the published entry count (the export may be longer)")
    args = parser.parse_args(argv)
    head = args.head.strip().lower()
    if not is_hex64(head):
        parser.error("--head must be 64 hex characters")
    if args.entries is not None and args.entries < 0:
        parser.error("--entries must be 0 or more")

    try:
        audit = open_binary(args.audit)
        reports = open_binary(args.reports) if args.reports is not None else None
        with audit:
            count, last, records = check_chain(audit, args.audit, head, args.entries, reports is not None)
        message = f"ok: {count} entries, head {last}"
        if reports is not None:
            with reports:
                matched = check_reports(reports, args.reports, args.audit, count, records)
            message += f", {matched} report revisions match"
    except Unreadable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Failure as e:
        print(f"fail: {e}", file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
