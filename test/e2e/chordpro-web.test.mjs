// The web app's ChordPro reader (internal/web/assets/static/chordpro.js)
// without a browser: it is a plain ES module.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseChordPro, transposeChord } from "../../internal/web/assets/static/chordpro.js";

test("one bar per chord; a pickup belongs to the first chord; a line without chords is one bar", () => {
  const song = parseChordPro(`{title: T}
{time: 6/8}
{tempo: 72}
{start_of_verse: Verse 1}
Oh [A]lights come [D]on
just words
{end_of_verse}
{c: softly}
{soc}
[E][A]
{eoc}`);
  assert.equal(song.title, "T");
  assert.deepEqual(song.time, { beatsPerBar: 6, beatUnit: 8 });
  assert.equal(song.tempo, 72);
  assert.deepEqual(
    song.sections.map((s) => s.name),
    ["Verse 1", "", "Chorus"],
  );
  assert.deepEqual(song.sections[0].lines[0].bars, [
    { chord: "A", text: "Oh lights come " },
    { chord: "D", text: "on" },
  ]);
  assert.deepEqual(song.sections[0].lines[1].bars, [{ chord: "", text: "just words" }]);
  assert.deepEqual(song.sections[1].lines[0], { comment: "softly", bars: [] });
  assert.deepEqual(
    song.sections[2].lines[0].bars.map((b) => b.chord),
    ["E", "A"],
  );
});

test("transpose keeps the chord's quality and slash bass, and its spelling", () => {
  assert.equal(transposeChord("Dmaj7/F#", 2), "Emaj7/G#");
  assert.equal(transposeChord("Bb7", 2), "C7");
  assert.equal(transposeChord("Eb", -1), "D");
  assert.equal(transposeChord("F#m7b5", -12), "F#m7b5");
  assert.equal(transposeChord("N.C.", 3), "N.C.");
  assert.equal(transposeChord("", 3), "");
});

test("hostile input neither throws nor hangs", () => {
  for (const text of ["", "{", "}", "[", "[[[]]]", "{time: 0/0}", "{start_of_tab}\n|--|", "x".repeat(70000), "[A".repeat(5000)]) {
    const song = parseChordPro(text);
    assert.ok(Array.isArray(song.sections));
  }
});
