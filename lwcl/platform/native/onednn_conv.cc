// lwcl's oneDNN convolutions: XLA FFI handlers for the forward, input-gradient and kernel-gradient passes of a
// 2-D NHWC / HWIO float32 convolution (any strides and explicit paddings, no dilation or groups), computed by
// oneDNN's convolution primitives (the library behind PyTorch's CPU convolutions).
//
// Built by `python -m lwcl.native.build` (bin/setup runs it); loaded and registered by lwcl/native/build.py;
// called from lwcl/models/onednn.py, which defines the gradients. Why: XLA:CPU's own convolution backward ran
// at half the matmul's rate or less (docs/results.md, "Convolutions on CPU").
//
// Threads: the batch is split into one part per thread of XLA's intra-op pool (the FFI ThreadPool); each part
// runs one single-threaded oneDNN primitive, so oneDNN's OpenMP never starts a team that would compete with
// XLA's threads for the cores. The kernel gradient sums the parts' gradients in part order (deterministic for
// a given thread count). The calling thread's OpenMP thread count is restored before returning, so PyTorch or
// NumPy code in the same process (which may share libgomp) keeps its own setting.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

// Sets this thread's OpenMP thread count to 1 (oneDNN's OpenMP runtime reads it when it runs a primitive) and
// restores it on scope exit.
class OneThread {
 public:
  OneThread() : previous_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(previous_); }

 private:
  int previous_;
};

struct Shape {
  int64_t n, c, h, w, o, kh, kw, ho, wo, sh, sw, pt, pb, pl, pr;
  auto key() const { return std::make_tuple(n, c, h, w, o, kh, kw, ho, wo, sh, sw, pt, pb, pl, pr); }
  bool operator<(const Shape& s) const { return key() < s.key(); }
};

struct Prims {
  dnnl::convolution_forward::primitive_desc fwd;
  dnnl::convolution_backward_data::primitive_desc bwd_data;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights;
  dnnl::convolution_forward fwd_p;
  dnnl::convolution_backward_data bwd_data_p;
  dnnl::convolution_backward_weights bwd_weights_p;
  memory::desc src, wei, dst;  // user layouts: nhwc, hwio, nhwc
  // HWIO -> the forward's and the input gradient's weights layouts; the kernel gradient's layout -> HWIO
  // (null primitives where the layouts are the same)
  dnnl::reorder fwd_w, data_w, diff_w;
};

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// `from` -> `to`: a reorder primitive, or a null one when the layouts are the same.
dnnl::reorder reorder_between(const memory::desc& from, const memory::desc& to) {
  if (from == to) return dnnl::reorder();
  return dnnl::reorder(dnnl::reorder::primitive_desc(engine(), from, engine(), to));
}

// Primitives for one shape (one part of the batch), made for one thread, cached for the process.
Prims& get(const Shape& s) {
  static std::mutex mu;
  static std::map<Shape, std::unique_ptr<Prims>> cache;
  std::lock_guard<std::mutex> lock(mu);
  OneThread one;
  auto it = cache.find(s);
  if (it != cache.end()) return *it->second;
  auto& eng = engine();
  memory::dims src_d{s.n, s.c, s.h, s.w}, wei_d{s.o, s.c, s.kh, s.kw}, dst_d{s.n, s.o, s.ho, s.wo};
  memory::dims strides{s.sh, s.sw}, pad_l{s.pt, s.pl}, pad_r{s.pb, s.pr};
  memory::desc src(src_d, dt::f32, tag::nhwc), dst(dst_d, dt::f32, tag::nhwc);
  memory::desc wei(wei_d, dt::f32, tag::hwio), wei_any(wei_d, dt::f32, tag::any);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto fd = dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                            src, wei_any, dst, strides, pad_l, pad_r);
  auto fwd = dnnl::convolution_forward::primitive_desc(fd, attr, eng);
  auto bdd = dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, src, wei_any, dst, strides,
                                                   pad_l, pad_r);
  auto bwd_data = dnnl::convolution_backward_data::primitive_desc(bdd, attr, eng, fwd);
  auto bwd = dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src, wei_any, dst,
                                                      strides, pad_l, pad_r);
  auto bwd_weights = dnnl::convolution_backward_weights::primitive_desc(bwd, attr, eng, fwd);
  auto p = std::make_unique<Prims>(Prims{fwd, bwd_data, bwd_weights, dnnl::convolution_forward(fwd),
                                         dnnl::convolution_backward_data(bwd_data),
                                         dnnl::convolution_backward_weights(bwd_weights), src, wei, dst,
                                         reorder_between(wei, fwd.weights_desc()),
                                         reorder_between(wei, bwd_data.weights_desc()),
                                         reorder_between(bwd_weights.diff_weights_desc(), wei)});
  auto& ref = *p;
  cache.emplace(s, std::move(p));
  return ref;
}

Shape shape_of(ffi::Span<const int64_t> x, ffi::Span<const int64_t> k, ffi::Span<const int64_t> y, int64_t sh,
               int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  // x: [N, H, W, C]; k: [KH, KW, C, O]; y: [N, Ho, Wo, O]
  return Shape{x[0], x[3], x[1], x[2], k[3], k[0], k[1], y[1], y[2], sh, sw, pt, pb, pl, pr};
}

// Runs part(i, begin, size) over the batch split in up to pool.num_threads() parts. The parts are claimed from
// a counter by the calling thread and by tasks on XLA's pool, so the caller never waits for a task that has not
// started (no deadlock when every pool thread is inside such a call); late tasks find nothing left and return.
struct SplitState {
  std::atomic<int64_t> next{0};
  int64_t done = 0, parts = 0, n = 0;
  std::mutex mu;
  std::condition_variable cv;
  std::function<void(int, int64_t, int64_t)> part;
  std::string error;
};

void work(const std::shared_ptr<SplitState>& st) {
  for (int64_t i; (i = st->next.fetch_add(1)) < st->parts;) {
    int64_t b = st->n * i / st->parts, e = st->n * (i + 1) / st->parts;
    std::string error;
    try {
      OneThread one;
      st->part(static_cast<int>(i), b, e - b);
    } catch (const std::exception& ex) {
      error = ex.what();
    }
    std::lock_guard<std::mutex> lock(st->mu);
    if (!error.empty()) st->error = error;
    if (++st->done == st->parts) st->cv.notify_all();
  }
}

void split(ffi::ThreadPool& pool, int64_t n, int64_t parts, std::function<void(int, int64_t, int64_t)> part) {
  auto st = std::make_shared<SplitState>();
  st->parts = parts;
  st->n = n;
  st->part = std::move(part);
  for (int64_t i = 1; i < parts; ++i) pool.Schedule([st] { work(st); });
  work(st);
  std::unique_lock<std::mutex> lock(st->mu);
  st->cv.wait(lock, [&] { return st->done == st->parts; });
  if (!st->error.empty()) throw std::runtime_error(st->error);
}

int64_t num_parts(ffi::ThreadPool& pool, int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), n));
}

// Per thread: a stream, and grow-only buffers for scratchpads and weights in the primitives' layouts, so a
// call allocates nothing once the shapes have been seen.
struct Local {
  dnnl::stream stream{engine()};
  std::vector<uint8_t> scratch, weights;
};

Local& local() {
  thread_local Local l;
  return l;
}

void* room(std::vector<uint8_t>& buffer, size_t bytes) {
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

void run(const dnnl::primitive& prim, const dnnl::primitive_desc_base& pd,
         std::unordered_map<int, memory> args) {
  auto& l = local();
  args.insert({DNNL_ARG_SCRATCHPAD,
               memory(pd.scratchpad_desc(), engine(), room(l.scratch, pd.scratchpad_desc().get_size()))});
  prim.execute(l.stream, args);
  l.stream.wait();
}

// The HWIO weights at `data` in layout `want` (through `reorder` when that is not null).
memory weights_in(const dnnl::reorder& reorder, const memory::desc& want, const memory::desc& user, void* data) {
  memory u(user, engine(), data);
  if (!reorder) return u;
  auto& l = local();
  memory m(want, engine(), room(l.weights, want.get_size()));
  reorder.execute(l.stream, u, m);
  return m;
}

ffi::Error failed(const std::exception& e) {
  return ffi::Error(ffi::ErrorCode::kInternal,
                    std::string("lwcl's oneDNN convolution failed: ") + e.what() +
                        " (run with --config.model.conv_impl=native to use XLA's convolution)");
}

// Runs `body` with this thread at 1 OpenMP thread; oneDNN's and other C++ errors become an FFI error.
template <typename Body>
ffi::Error guarded(Body body) {
  try {
    OneThread one;
    body();
  } catch (const std::exception& e) {
    return failed(e);
  }
  return ffi::Error::Success();
}

// The forward pass (`in`: the input x, `out`: y) or the input-gradient pass (`in`: dy, `out`: dx), per part of
// the batch, with the weights `k` (HWIO) reordered into the primitive's layout.
void data_pass(ffi::ThreadPool& pool, const Shape& s, bool forward, const float* in, float* out, void* k) {
  const int64_t x_size = s.h * s.w * s.c, y_size = s.ho * s.wo * s.o;
  split(pool, s.n, num_parts(pool, s.n), [&](int, int64_t b, int64_t size) {
    Shape part = s;
    part.n = size;
    auto& p = get(part);
    auto& eng = engine();
    auto* in_part = const_cast<float*>(in) + b * (forward ? x_size : y_size);
    auto* out_part = out + b * (forward ? y_size : x_size);
    if (forward) {
      auto w = weights_in(p.fwd_w, p.fwd.weights_desc(), p.wei, k);
      memory src(p.src, eng, in_part), dst(p.dst, eng, out_part);
      run(p.fwd_p, p.fwd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}});
    } else {
      auto w = weights_in(p.data_w, p.bwd_data.weights_desc(), p.wei, k);
      memory ddst(p.dst, eng, in_part), dsrc(p.src, eng, out_part);
      run(p.bwd_data_p, p.bwd_data, {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, dsrc}});
    }
  });
}

}  // namespace

static ffi::Error Fwd(ffi::ThreadPool pool, ffi::BufferR4<ffi::F32> x, ffi::BufferR4<ffi::F32> k,
                      ffi::ResultBufferR4<ffi::F32> y, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                      int64_t pr) {
  return guarded([&] {
    Shape s = shape_of(x.dimensions(), k.dimensions(), y->dimensions(), sh, sw, pt, pb, pl, pr);
    if (s.n > 0) data_pass(pool, s, true, x.typed_data(), y->typed_data(), k.untyped_data());
  });
}

static ffi::Error BwdData(ffi::ThreadPool pool, ffi::BufferR4<ffi::F32> dy, ffi::BufferR4<ffi::F32> k,
                          ffi::ResultBufferR4<ffi::F32> dx, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                          int64_t pl, int64_t pr) {
  return guarded([&] {
    Shape s = shape_of(dx->dimensions(), k.dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
    if (s.n > 0) data_pass(pool, s, false, dy.typed_data(), dx->typed_data(), k.untyped_data());
  });
}

static ffi::Error BwdWeights(ffi::ThreadPool pool, ffi::BufferR4<ffi::F32> x, ffi::BufferR4<ffi::F32> dy,
                             ffi::ResultBufferR4<ffi::F32> dk, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                             int64_t pl, int64_t pr) {
  return guarded([&] {
    Shape s = shape_of(x.dimensions(), dk->dimensions(), dy.dimensions(), sh, sw, pt, pb, pl, pr);
    const int64_t count = s.kh * s.kw * s.c * s.o;
    float* out = dk->typed_data();
    if (s.n == 0) {
      std::memset(out, 0, count * sizeof(float));
      return;
    }
    const int64_t parts = num_parts(pool, s.n), x_size = s.h * s.w * s.c, y_size = s.ho * s.wo * s.o;
    std::vector<std::vector<float>> partial(parts - 1, std::vector<float>(count));  // part 0 writes to out
    split(pool, s.n, parts, [&](int i, int64_t b, int64_t size) {
      Shape part = s;
      part.n = size;
      auto& p = get(part);
      auto& eng = engine();
      memory src(p.src, eng, x.typed_data() + b * x_size), ddst(p.dst, eng, dy.typed_data() + b * y_size);
      memory user(p.wei, eng, i == 0 ? out : partial[i - 1].data());
      auto want = p.bwd_weights.diff_weights_desc();
      memory dw = p.diff_w ? memory(want, eng, room(local().weights, want.get_size())) : user;
      run(p.bwd_weights_p, p.bwd_weights, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dw}});
      if (p.diff_w) {
        p.diff_w.execute(local().stream, dw, user);
        local().stream.wait();
      }
    });
    for (const auto& part : partial)  // in part order: deterministic for a given thread count
      for (int64_t j = 0; j < count; ++j) out[j] += part[j];
  });
}

#define BIND                                                                                                 \
  ffi::Ffi::Bind()                                                                                           \
      .Ctx<ffi::ThreadPool>()                                                                                \
      .Arg<ffi::BufferR4<ffi::F32>>()                                                                          \
      .Arg<ffi::BufferR4<ffi::F32>>()                                                                          \
      .Ret<ffi::BufferR4<ffi::F32>>()                                                                          \
      .Attr<int64_t>("sh")                                                                                   \
      .Attr<int64_t>("sw")                                                                                   \
      .Attr<int64_t>("pt")                                                                                   \
      .Attr<int64_t>("pb")                                                                                   \
      .Attr<int64_t>("pl")                                                                                   \
      .Attr<int64_t>("pr")

XLA_FFI_DEFINE_HANDLER_SYMBOL(LwclConvFwd, Fwd, BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(LwclConvBwdData, BwdData, BIND);
XLA_FFI_DEFINE_HANDLER_SYMBOL(LwclConvBwdWeights, BwdWeights, BIND);
