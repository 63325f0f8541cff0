// oneDNN primitives for channels-last CPU inference: the jt.code kernels of unidetector/ops/onednn.py.
//
// conv_fused_nhwc_cpu: a convolution with its frozen BatchNorm, residual add and ReLU fused
//   y = relu( conv(x, w) * scale[o] + shift[o] + residual )      (each part optional, see the macros)
//   x (N, H, W, C) and y (N, OH, OW, O) channels-last; w (O, C, KH, KW) float32 as nn.Conv2d stores it;
//   scale, shift (O,) float32; residual (N, OH, OW, O) of y's type.
// The BatchNorm, the add and the ReLU are oneDNN post-ops (binary mul / add per output channel, binary
// add of the residual, eltwise ReLU) applied to the convolution's float32 accumulators before the one
// store of y, so none of them is a separate pass over memory. With CONV_FUSED_BF16, x, the residual and
// y are bfloat16 and the weights are converted to bfloat16 in oneDNN's weight reorder: on processors
// with AMX (or AVX-512-BF16) oneDNN then runs its bfloat16 kernels, float32 accumulation.
//
// to_channels_last_cpu / to_channels_first_cpu: (N, C, H, W) float32 <-> (N, H, W, C) of the activations'
//   type (a oneDNN reorder: the transpose and the conversion in one multi-threaded pass).
//
// block_pool_nhwc_cpu: average pooling over non-overlapping K x K blocks (kernel = stride = K, floor),
//   x (N, H, W, C) -> y (N, H / K, W / K, C), float32 or bfloat16 (CONV_FUSED_BF16).
//
// conv_nhwc_forward_cpu / conv_nhwc_backward_data_cpu / conv_nhwc_backward_weights_cpu: a training convolution
// of channels-last float32 tensors and its two gradients (conv2d_nhwc of onednn.py); with CONV_FUSED_BF16 the
// convolution reads bfloat16 copies of its operands (mixed precision) and still writes float32:
//   y = conv(x, w),  dx = conv_transpose(dy, w),  dw = correlation of x with dy
//   x, dx (N, H, W, C); y, dy (N, OH, OW, O); w, dw (O, C, KH, KW) as nn.Conv2d stores them.
// oneDNN reads and writes the activations channels-last as they are (Jittor's NCHW mkl_conv reorders them to a
// blocked layout and back at every call); only the weights move between oihw and oneDNN's layout.
#ifndef CONV_FUSED_BF16  // set by onednn.py; these defaults serve editors and the syntax check
#define CONV_FUSED_BF16 0
#define CONV_FUSED_AFFINE 1
#define CONV_FUSED_RESIDUAL 1
#define CONV_FUSED_RELU 1
#endif

#include <unordered_map>

#include <dnnl.hpp>

namespace unidet {

inline const dnnl::engine& cpu_engine() {
    static const dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    return eng;
}

struct ConvFusedShape {
    int N, H, W, C;          // input (N, H, W, C)
    int O, KH, KW;           // weights (O, C, KH, KW)
    int SH, SW, PH, PW;      // stride, symmetric zero padding
    int DH, DW;              // dilation (1: none)
    int OH, OW;              // output (N, OH, OW, O)
};

// x, residual, y: float32 or bfloat16 storage (CONV_FUSED_BF16); w, scale, shift: float32.
inline void conv_fused_nhwc_cpu(const void* x, const float* w, const float* scale, const float* shift,
                                const void* residual, const ConvFusedShape& s, void* y) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    using dims = dnnl::memory::dims;
    const dnnl::engine& eng = cpu_engine();
    dnnl::stream stream(eng);
    const dt act = CONV_FUSED_BF16 ? dt::bf16 : dt::f32;
    const dims x_dims{s.N, s.C, s.H, s.W}, w_dims{s.O, s.C, s.KH, s.KW}, y_dims{s.N, s.O, s.OH, s.OW};
    const dims per_channel{1, s.O, 1, 1};
    const dnnl::memory::desc x_md(x_dims, act, tag::nhwc), y_md(y_dims, act, tag::nhwc);
    const dnnl::memory::desc w_user_md(w_dims, dt::f32, tag::oihw), w_any_md(w_dims, act, tag::any);
    const dnnl::memory::desc channel_md(per_channel, dt::f32, tag::nchw);

    dnnl::post_ops ops;
    if (CONV_FUSED_AFFINE) {
        ops.append_binary(dnnl::algorithm::binary_mul, channel_md);
        ops.append_binary(dnnl::algorithm::binary_add, channel_md);
    }
    if (CONV_FUSED_RESIDUAL) ops.append_binary(dnnl::algorithm::binary_add, y_md);
    if (CONV_FUSED_RELU) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);

    const dnnl::convolution_forward::desc desc(
        dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, x_md, w_any_md, y_md,
        dims{s.SH, s.SW}, dims{s.DH - 1, s.DW - 1}, dims{s.PH, s.PW}, dims{s.PH, s.PW});
    const dnnl::convolution_forward::primitive_desc pd(desc, attr, eng);

    dnnl::memory w_user(w_user_md, eng, const_cast<float*>(w));
    dnnl::memory w_mem = w_user;
    if (pd.weights_desc() != w_user_md) {
        w_mem = dnnl::memory(pd.weights_desc(), eng);
        dnnl::reorder(w_user, w_mem).execute(stream, w_user, w_mem);
    }
    std::unordered_map<int, dnnl::memory> args{
        {DNNL_ARG_SRC, dnnl::memory(x_md, eng, const_cast<void*>(x))},
        {DNNL_ARG_WEIGHTS, w_mem},
        {DNNL_ARG_DST, dnnl::memory(y_md, eng, y)}};
    int post = 0;
    if (CONV_FUSED_AFFINE) {
        args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(post++) | DNNL_ARG_SRC_1] =
            dnnl::memory(channel_md, eng, const_cast<float*>(scale));
        args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(post++) | DNNL_ARG_SRC_1] =
            dnnl::memory(channel_md, eng, const_cast<float*>(shift));
    }
    if (CONV_FUSED_RESIDUAL) {
        args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(post++) | DNNL_ARG_SRC_1] =
            dnnl::memory(y_md, eng, const_cast<void*>(residual));
    }
    dnnl::convolution_forward(pd).execute(stream, args);
    stream.wait();
}

inline void reorder_cpu(const void* x, dnnl::memory::format_tag x_tag, dnnl::memory::data_type x_type,
                        void* y, dnnl::memory::format_tag y_tag, dnnl::memory::data_type y_type,
                        int N, int C, int H, int W) {
    const dnnl::engine& eng = cpu_engine();
    dnnl::stream stream(eng);
    const dnnl::memory::dims dims{N, C, H, W};
    dnnl::memory src(dnnl::memory::desc(dims, x_type, x_tag), eng, const_cast<void*>(x));
    dnnl::memory dst(dnnl::memory::desc(dims, y_type, y_tag), eng, y);
    dnnl::reorder(src, dst).execute(stream, src, dst);
    stream.wait();
}

// x (N, C, H, W) float32 -> y (N, H, W, C)
inline void to_channels_last_cpu(const float* x, int N, int C, int H, int W, void* y) {
    using dt = dnnl::memory::data_type;
    reorder_cpu(x, dnnl::memory::format_tag::nchw, dt::f32, y, dnnl::memory::format_tag::nhwc,
                CONV_FUSED_BF16 ? dt::bf16 : dt::f32, N, C, H, W);
}

// x (N, H, W, C) -> y (N, C, H, W) float32
inline void to_channels_first_cpu(const void* x, int N, int H, int W, int C, float* y) {
    using dt = dnnl::memory::data_type;
    reorder_cpu(x, dnnl::memory::format_tag::nhwc, CONV_FUSED_BF16 ? dt::bf16 : dt::f32, y,
                dnnl::memory::format_tag::nchw, dt::f32, N, C, H, W);
}

inline void block_pool_nhwc_cpu(const void* x, int N, int H, int W, int C, int K, void* y) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    using dims = dnnl::memory::dims;
    const dnnl::engine& eng = cpu_engine();
    dnnl::stream stream(eng);
    const dt act = CONV_FUSED_BF16 ? dt::bf16 : dt::f32;
    // floor: x is seen as its first H / K * K rows and W / K * K columns (the strides of the full tensor)
    const dnnl::memory::desc x_md(dims{N, C, H / K * K, W / K * K}, act,
                                  dims{(dnnl::memory::dim)H * W * C, 1, (dnnl::memory::dim)W * C, C});
    const dnnl::memory::desc y_md(dims{N, C, H / K, W / K}, act, tag::nhwc);
    const dnnl::pooling_forward::desc desc(dnnl::prop_kind::forward_inference,
                                           dnnl::algorithm::pooling_avg_include_padding, x_md, y_md, dims{K, K},
                                           dims{K, K}, dims{0, 0}, dims{0, 0});
    const dnnl::pooling_forward::primitive_desc pd(desc, eng);
    dnnl::pooling_forward(pd).execute(stream, {{DNNL_ARG_SRC, dnnl::memory(x_md, eng, const_cast<void*>(x))},
                                               {DNNL_ARG_DST, dnnl::memory(y_md, eng, y)}});
    stream.wait();
}

struct ConvTrainDescs {
    dnnl::memory::desc x, y, w_user;   // the user's float32 tensors: x, y channels-last, w oihw
    dnnl::memory::desc xc, yc, w_any;  // what the convolution reads: x, y (gradients) and w in the compute type
    dnnl::memory::dims strides, dilates, padding;
};

// Compute type: float32, or bfloat16 with CONV_FUSED_BF16 (the operands are rounded to bfloat16 in a reorder at
// each call; accumulation and the results, y, dx and dw, stay float32).
inline ConvTrainDescs conv_train_descs(const ConvFusedShape& s) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    using dims = dnnl::memory::dims;
    const dt compute = CONV_FUSED_BF16 ? dt::bf16 : dt::f32;
    const dims x_dims{s.N, s.C, s.H, s.W}, y_dims{s.N, s.O, s.OH, s.OW}, w_dims{s.O, s.C, s.KH, s.KW};
    return {dnnl::memory::desc(x_dims, dt::f32, tag::nhwc), dnnl::memory::desc(y_dims, dt::f32, tag::nhwc),
            dnnl::memory::desc(w_dims, dt::f32, tag::oihw),
            dnnl::memory::desc(x_dims, compute, tag::nhwc), dnnl::memory::desc(y_dims, compute, tag::nhwc),
            dnnl::memory::desc(w_dims, compute, tag::any),
            dims{s.SH, s.SW}, dims{s.DH - 1, s.DW - 1}, dims{s.PH, s.PW}};
}

inline dnnl::convolution_forward::primitive_desc conv_train_forward_pd(const ConvTrainDescs& d) {
    return {{dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, d.xc, d.w_any, d.y, d.strides,
             d.dilates, d.padding, d.padding},
            cpu_engine()};
}

// The user's float32 tensor at p (desc user) as `want`: the same memory, or a reordered (converted) copy.
inline dnnl::memory user_as(const dnnl::memory::desc& want, const dnnl::memory::desc& user_md, const float* p,
                            dnnl::stream& stream) {
    dnnl::memory user(user_md, cpu_engine(), const_cast<float*>(p));
    if (want == user_md) return user;
    dnnl::memory out(want, cpu_engine());
    dnnl::reorder(user, out).execute(stream, user, out);
    return out;
}

inline void conv_nhwc_forward_cpu(const float* x, const float* w, const ConvFusedShape& s, float* y) {
    const dnnl::engine& eng = cpu_engine();
    const ConvTrainDescs d = conv_train_descs(s);
    const auto pd = conv_train_forward_pd(d);
    dnnl::stream stream(eng);
    dnnl::convolution_forward(pd).execute(stream, {{DNNL_ARG_SRC, user_as(d.xc, d.x, x, stream)},
                                                   {DNNL_ARG_WEIGHTS, user_as(pd.weights_desc(), d.w_user, w, stream)},
                                                   {DNNL_ARG_DST, dnnl::memory(d.y, eng, y)}});
    stream.wait();
}

inline void conv_nhwc_backward_data_cpu(const float* dy, const float* w, const ConvFusedShape& s, float* dx) {
    const dnnl::engine& eng = cpu_engine();
    const ConvTrainDescs d = conv_train_descs(s);
    const dnnl::convolution_backward_data::primitive_desc pd(
        {dnnl::algorithm::convolution_direct, d.x, d.w_any, d.yc, d.strides, d.dilates, d.padding, d.padding},
        eng, conv_train_forward_pd(d));
    dnnl::stream stream(eng);
    dnnl::convolution_backward_data(pd).execute(
        stream, {{DNNL_ARG_DIFF_DST, user_as(d.yc, d.y, dy, stream)},
                 {DNNL_ARG_WEIGHTS, user_as(pd.weights_desc(), d.w_user, w, stream)},
                 {DNNL_ARG_DIFF_SRC, dnnl::memory(d.x, eng, dx)}});
    stream.wait();
}

inline void conv_nhwc_backward_weights_cpu(const float* x, const float* dy, const ConvFusedShape& s, float* dw) {
    using dt = dnnl::memory::data_type;
    const dnnl::engine& eng = cpu_engine();
    const ConvTrainDescs d = conv_train_descs(s);
    const dnnl::memory::desc dw_any(d.w_user.dims(), dt::f32, dnnl::memory::format_tag::any);
    const dnnl::convolution_backward_weights::primitive_desc pd(
        {dnnl::algorithm::convolution_direct, d.xc, dw_any, d.yc, d.strides, d.dilates, d.padding, d.padding},
        eng, conv_train_forward_pd(d));
    dnnl::stream stream(eng);
    dnnl::memory user(d.w_user, eng, dw);
    const bool direct = pd.diff_weights_desc() == d.w_user;
    dnnl::memory out = direct ? user : dnnl::memory(pd.diff_weights_desc(), eng);
    dnnl::convolution_backward_weights(pd).execute(
        stream, {{DNNL_ARG_SRC, user_as(d.xc, d.x, x, stream)},
                 {DNNL_ARG_DIFF_DST, user_as(d.yc, d.y, dy, stream)},
                 {DNNL_ARG_DIFF_WEIGHTS, out}});
    if (!direct) dnnl::reorder(out, user).execute(stream, out, user);
    stream.wait();
}

}  // namespace unidet
