// Ripcord: the fixture stories (fixture.rs) read files that the published crate leaves out,
// so they could never run here; they are not carried.
mod fuzz;
