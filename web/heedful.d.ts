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

/** Options of a translation (defaults: the folder's generation_config.json). */
export interface TranslateOptions {
  /** Beam width (1: greedy). */
  beams?: number;
  /** Longest output in tokens, the decoder start token included (Hugging Face's max_length). */
  maxLength?: number;
  /** Keep the first input's cross-attention: `true` for the mean over the heads of the last
   *  decoder layer, or choose the layer and/or one head. */
  attention?: boolean | { layer?: number; head?: number };
}

/** The cross-attention of a translation: which source pieces each generated piece attended to. */
export interface CrossAttention {
  /** The decoder layer. */
  layer: number;
  /** The head, or null for the mean over heads. */
  head: number | null;
  /** Source pieces (SentencePiece, `▁` marks a word start), `</s>` last: the columns. */
  sourcePieces: string[];
  /** Generated pieces, the end token `</s>` last when reached: the rows. */
  targetPieces: string[];
  /** rows[target][source]: attention weights, each row sums to 1. */
  rows: Float32Array[];
}

/** One input's translation. */
export interface Translation {
  /** The text, special tokens skipped. */
  text: string;
  /** Token ids as Hugging Face `generate` returns the row: the decoder start token first, the end
   *  token last when reached, no padding. */
  ids: number[];
  /** Only on the first input, when `attention` was asked for. */
  attention?: CrossAttention;
}

export interface MarianModel {
  info(): { encoderLayers: number; decoderLayers: number; heads: number; numBeams: number; maxLength: number };
  /** Translations of `texts`, in order, decoded in one batch on the GPU. */
  translate(texts: string[], opts?: TranslateOptions): Promise<Translation[]>;
  free(): void;
}

export function createEngine(): Promise<Engine>;
export function loadG2p(engine: Engine, url: string): Promise<G2pModel>;
export function loadBert(engine: Engine, base: string): Promise<BertModel>;
export function loadMarian(engine: Engine, base: string): Promise<MarianModel>;
