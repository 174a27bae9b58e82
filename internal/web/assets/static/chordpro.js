// ChordPro, as the web app draws it: the subset of docs/protocol.md
// (title, artist, key, tempo, time, comments, chorus/verse/bridge/tab
// sections, [chords] inline with the lyrics), turned into the chart model
// the app scrolls: sections of lines, each line a run of bars.
//
// ChordPro has no bar lines, so the chart counts one bar per chord: each
// [chord] starts a bar that holds the lyric up to the next chord, and a
// lyric line without chords is one bar. That is how most band charts are
// written (one chord change a bar) and keeps every device's bar count
// identical, which is all the sync needs.

const DIRECTIVE = /^\{\s*([A-Za-z_]+)\s*(?::\s*(.*?))?\s*\}$/;
const SECTION_NAMES = { chorus: "Chorus", verse: "Verse", bridge: "Bridge", tab: "Tab" };
const SHORT = { soc: "start_of_chorus", eoc: "end_of_chorus", sov: "start_of_verse", eov: "end_of_verse", sob: "start_of_bridge", eob: "end_of_bridge", sot: "start_of_tab", eot: "end_of_tab", t: "title", c: "comment", st: "subtitle" };

/** Parses ChordPro text into {title, artist, key, tempo, time, sections}. */
export function parseChordPro(text) {
  const song = { title: "", artist: "", key: "", tempo: null, time: null, sections: [] };
  let section = null;
  const open = (name) => {
    section = { name, lines: [] };
    song.sections.push(section);
  };
  const current = () => {
    if (!section) open("");
    return section;
  };
  for (const raw of String(text).split(/\r?\n/)) {
    const line = raw.replace(/\s+$/, "");
    if (line.startsWith("#")) continue;
    const d = DIRECTIVE.exec(line.trim());
    if (d) {
      const name = SHORT[d[1].toLowerCase()] || d[1].toLowerCase();
      const value = (d[2] || "").trim();
      if (name === "title") song.title = value;
      else if (name === "artist") song.artist = value;
      else if (name === "key") song.key = value;
      else if (name === "tempo") song.tempo = Number(value) || null;
      else if (name === "time") {
        const m = /^(\d+)\s*\/\s*(\d+)$/.exec(value);
        if (m) song.time = { beatsPerBar: Number(m[1]), beatUnit: Number(m[2]) };
      } else if (name === "comment" || name === "comment_italic" || name === "ci") {
        current().lines.push({ comment: value, bars: [] });
      } else if (name.startsWith("start_of_")) {
        const kind = name.slice(9);
        open(value || SECTION_NAMES[kind] || kind);
        section.kind = kind;
      } else if (name.startsWith("end_of_")) {
        section = null;
      }
      continue;
    }
    if (!line.trim()) {
      // A blank line outside a section environment ends a verse-like block.
      if (section && !section.kind && section.lines.length) section = null;
      continue;
    }
    const tab = section?.kind === "tab";
    current().lines.push(tab ? { tab: line, bars: [] } : { bars: barsOf(line) });
  }
  song.sections = song.sections.filter((s) => s.lines.length);
  return song;
}

/** The bars of one lyric line: [{chord, text}], one per chord. */
function barsOf(line) {
  const parts = line.split(/\[([^\]]{0,32})\]/);
  const bars = [];
  // parts: text, chord, text, chord, text...
  if (parts[0].trim() || parts.length === 1) bars.push({ chord: "", text: parts[0] });
  for (let i = 1; i < parts.length; i += 2) bars.push({ chord: parts[i].trim(), text: parts[i + 1] || "" });
  if (bars.length > 1 && !bars[0].chord && !bars[0].text.trim()) bars.shift();
  // Lyric before the first chord belongs with it (a pickup), not a bar of its own.
  if (bars.length > 1 && !bars[0].chord) {
    const pickup = bars.shift();
    bars[0] = { chord: bars[0].chord, text: pickup.text + bars[0].text };
  }
  return bars;
}

const SHARPS = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const FLATS = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"];
const NOTE = /^([A-G])([#b]?)/;

function shiftNote(note, semis, flats) {
  const m = NOTE.exec(note);
  if (!m) return note;
  let i = SHARPS.indexOf(m[1]) + (m[2] === "#" ? 1 : m[2] === "b" ? -1 : 0);
  i = (((i + semis) % 12) + 12) % 12;
  return (flats ? FLATS : SHARPS)[i] + note.slice(m[0].length);
}

/** A chord moved by `semis` semitones, slash bass included ("Dmaj7/F#" +2 = "Emaj7/G#"). */
export function transposeChord(chord, semis) {
  if (!semis || !chord || !NOTE.test(chord)) return chord;
  const flats = /^[A-G]b/.test(chord) && !/^[A-G]#/.test(chord);
  return chord
    .split("/")
    .map((part) => shiftNote(part, semis, flats))
    .join("/");
}
