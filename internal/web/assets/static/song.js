// The built-in demo chart: an original tune written for BandSync, 4/4,
// four bars to a line. Each line: four chords (one per bar) and a lyric.
export const SONG = {
  title: "Harbour Lights (demo)",
  beatsPerBar: 4,
  sections: [
    { name: "Intro", lines: [{ chords: ["A", "D", "A", "E"], lyric: "" }] },
    {
      name: "Verse 1",
      lines: [
        { chords: ["A", "A", "D", "A"], lyric: "Lights come on along the harbour wall" },
        { chords: ["D", "D", "A", "E"], lyric: "Somebody's counting: one, two, three, four" },
      ],
    },
    {
      name: "Chorus",
      lines: [
        { chords: ["F#m", "D", "A", "E"], lyric: "Stay in time, stay in time tonight" },
        { chords: ["F#m", "D", "E", "E"], lyric: "Every heart on the same downbeat" },
      ],
    },
    {
      name: "Verse 2",
      lines: [
        { chords: ["A", "A", "D", "A"], lyric: "Drummer looks up and the room goes still" },
        { chords: ["D", "D", "A", "E"], lyric: "Bass on the one like it always will" },
      ],
    },
    {
      name: "Chorus",
      lines: [
        { chords: ["F#m", "D", "A", "E"], lyric: "Stay in time, stay in time tonight" },
        { chords: ["F#m", "D", "E", "E"], lyric: "Every heart on the same downbeat" },
      ],
    },
    {
      name: "Bridge",
      lines: [
        { chords: ["Bm7", "Dmaj7/F#", "A", "F#m"], lyric: "Hold it, hold it, let the cymbals ring" },
        { chords: ["Bm", "D", "E7sus4", "E7"], lyric: "Wait for the nod and then come back in" },
      ],
    },
    {
      name: "Chorus",
      lines: [
        { chords: ["F#m", "D", "A", "E"], lyric: "Stay in time, stay in time tonight" },
        { chords: ["F#m", "D", "E", "A"], lyric: "Every heart on the same downbeat" },
      ],
    },
    { name: "Outro", lines: [{ chords: ["A", "D", "A", "A"], lyric: "" }] },
  ],
};
