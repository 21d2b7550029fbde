// Rotary embedding at each token's position. The host gives the inverse frequencies (with any
// llama3 scaling or per-frequency factors folded in); the angle is position × inv_freq in f32 and
// its cos/sin are taken in f32, as transformers computes them. `neox`: pairs (i, i + rot/2)
// (rotate_half); otherwise interleaved pairs (2i, 2i + 1) (GPT-J, llama.cpp's GGUF layout).
// Dimensions past `rot_dim` (partial rotary) are untouched. Block (token, c) takes every
// gridDim.y-th run of blockDim pairs.
template <typename T>
__device__ void rope(T* x, const u32* positions, const float* inv_freq, int n_heads, int head_dim,
                     int rot_dim, int neox) {
    const i64 t = blockIdx.x;
    const int half = rot_dim / 2;
    const float pos = (float)positions[t];
    for (int j = blockIdx.y * blockDim.x + threadIdx.x; j < n_heads * half; j += gridDim.y * blockDim.x) {
        const int h = j / half, i = j % half;
        float s, c;
        sincosf(pos * inv_freq[i], &s, &c);
        T* row = x + (t * n_heads + h) * head_dim;
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float xa = to_f32(row[a]), xb = to_f32(row[b]);
        row[a] = from_f32<T>(xa * c - xb * s);
        row[b] = from_f32<T>(xb * c + xa * s);
    }
}

#define ROPE(T, S)                                                                                         \
    extern "C" __global__ void rope_##S(T* x, const u32* positions, const float* inv_freq, int n_heads,   \
                                        int head_dim, int rot_dim, int neox) {                             \
        grid_dependency();                                                                                 \
        rope<T>(x, positions, inv_freq, n_heads, head_dim, rot_dim, neox);                                 \
    }
FOR_HALF_TYPES(ROPE)
