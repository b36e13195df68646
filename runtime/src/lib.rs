//! compc's reference runtime. (Stub: the interpreter is being written.)
