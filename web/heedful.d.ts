// Types of web/heedful.js.

/** The WebGPU device (opaque). */
export interface Engine {
  /** What the engine runs on: adapter name, backend, features, how f16 weights are read. */
  info(): { adapter: string; backend: string; features: string[]; f16: string; maxStorageBuffersPerStage: number };
}

/** One word's conversion. */
export interface G2pResult {
  word: string;
  /** Space-separated phonemes (ARPAbet for the bundled model). */
  phonemes: string;
  /** The decoder reached its end token (false: cut at the model's max_len). */
  ended: boolean;
  /** Input symbols (the letters, then the end symbol): the heatmap's columns. */
  inputs: string[];
  /** Output symbols (the phonemes, then the end token if reached): the heatmap's rows. */
  outputs: string[];
  /** attention[step][input]: the weight each output step put on each input symbol. */
  attention: Float32Array[];
}

export interface G2pModel {
  run(words: string[], beam?: number): Promise<G2pResult[]>;
  free(): void;
}

export interface BertModel {
  /** One L2-normalized embedding per text (384 values for all-MiniLM-L6-v2). */
  embed(texts: string[]): Promise<Float32Array[]>;
  free(): void;
}

export function createEngine(): Promise<Engine>;
export function loadG2p(engine: Engine, url: string): Promise<G2pModel>;
export function loadBert(engine: Engine, base: string): Promise<BertModel>;
