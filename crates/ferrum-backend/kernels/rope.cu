// Rotary embedding at each token's position. The host builds the cos/sin tables once
// ([max_position][rot_dim / 2], f32, with any llama3/yarn scaling of the frequencies folded in),
// so one kernel serves every scaling. `neox`: pairs (i, i + rot/2) (rotate_half); otherwise
// interleaved pairs (2i, 2i + 1) (GPT-J). Dimensions past `rot_dim` (partial rotary) are untouched.
template <typename T>
__device__ void rope(T* x, const u32* positions, const float* cos_t, const float* sin_t, int n_heads,
                     int head_dim, int rot_dim, int neox) {
    const i64 t = blockIdx.x;
    const int half = rot_dim / 2;
    const float* c = cos_t + (i64)positions[t] * half;
    const float* s = sin_t + (i64)positions[t] * half;
    for (int j = threadIdx.x; j < n_heads * half; j += blockDim.x) {
        const int h = j / half, i = j % half;
        T* row = x + (t * n_heads + h) * head_dim;
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float xa = to_f32(row[a]), xb = to_f32(row[b]);
        row[a] = from_f32<T>(xa * c[i] - xb * s[i]);
        row[b] = from_f32<T>(xb * c[i] + xa * s[i]);
    }
}

#define ROPE(T, S)                                                                                         \
    extern "C" __global__ void rope_##S(T* x, const u32* positions, const float* cos_t, const float* sin_t, \
                                        int n_heads, int head_dim, int rot_dim, int neox) {                \
        rope<T>(x, positions, cos_t, sin_t, n_heads, head_dim, rot_dim, neox);                             \
    }
FOR_HALF_TYPES(ROPE)
