// The trainer against independent references: autograd gradients against float64 finite
// differences; the exported GGUF's logits in the runtime against the trainer's own; a
// ~100k-parameter model learning a tiny fixture; kill-and-resume reproducing the
// uninterrupted loss curve. Writes the trained fixture model for the llama.cpp check
// (tests/train/export_llama_cpp.py).
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "microlm/error.h"
#include "microlm/model.h"
#include "microlm/random_model.h"
#include "export_gguf.h"
#include "trainer.h"

namespace fs = std::filesystem;
using namespace microlm;
using namespace microlm::train;

namespace {

LlamaHparams tiny_shape() {
    LlamaHparams s;
    s.n_vocab = 512;
    s.dim = 64;
    s.n_layers = 2;
    s.n_heads = 4;
    s.n_kv_heads = 2;
    s.ffn_dim = 160;
    s.n_ctx = 128;
    return s;
}

fs::path scratch(const std::string& name) {
    fs::path p = fs::temp_directory_path() / ("microlm_train_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
}

// A fixture corpus with structure a small model learns fast: "documents" that count up
// through a random stretch of a fixed token cycle, separated by token 0; the loss is taken
// on every token but the separators' successors.
void write_fixture_shards(const fs::path& dir, int64_t vocab) {
    std::mt19937 rng(7);
    std::vector<int> cycle(200);
    for (int i = 0; i < 200; ++i) cycle[static_cast<size_t>(i)] = 3 + (i * 37) % (static_cast<int>(vocab) - 3);
    auto make = [&](const std::string& stem, int64_t n) {
        std::vector<uint16_t> ids;
        std::vector<uint8_t> mask;
        while (static_cast<int64_t>(ids.size()) < n) {
            size_t at = rng() % cycle.size();
            const int len = 20 + static_cast<int>(rng() % 40);
            ids.push_back(0);
            mask.push_back(1);
            for (int j = 0; j < len; ++j) {
                ids.push_back(static_cast<uint16_t>(cycle[(at + static_cast<size_t>(j)) % cycle.size()]));
                mask.push_back(j == 0 ? 0 : 1);  // the start of a stretch is unpredictable
            }
        }
        ids.resize(static_cast<size_t>(n));
        mask.resize(static_cast<size_t>(n));
        std::ofstream(dir / (stem + ".tok"), std::ios::binary).write(reinterpret_cast<const char*>(ids.data()), n * 2);
        std::ofstream(dir / (stem + ".mask"), std::ios::binary).write(reinterpret_cast<const char*>(mask.data()), n);
    };
    make("train-00000", 60000);
    make("val-00000", 6000);
    nlohmann::json m = {
        {"format", "microlm-shards-1"},
        {"tokenizer", {{"vocab_size", vocab}, {"path", ""}}},
        {"splits",
         {{"train", {{"shards", {{{"ids", "train-00000.tok"}, {"mask", "train-00000.mask"}, {"tokens", 60000}}}}}},
          {"val", {{"shards", {{{"ids", "val-00000.tok"}, {"mask", "val-00000.mask"}, {"tokens", 6000}}}}}}}},
    };
    std::ofstream(dir / "manifest.json") << m.dump(2);
}

TrainConfig tiny_config(const fs::path& data, const fs::path& out) {
    TrainConfig c;
    c.shape = tiny_shape();
    c.data = data.string();
    c.out = out.string();
    c.threads = 1;
    c.precision = "fp32";
    c.steps = 40;
    c.batch = 8;
    c.seq_len = 64;
    c.lr = 1e-2;
    c.min_lr = 1e-3;
    c.warmup = 5;
    c.eval_every = 10;
    c.eval_batches = 2;
    c.ckpt_every = 5;
    c.log_every = 100;
    return c;
}

std::vector<double> csv_losses(const fs::path& csv) {
    std::ifstream in(csv);
    std::string line;
    std::getline(in, line);
    std::vector<double> out;
    while (std::getline(in, line)) {
        const auto a = line.find(',');
        out.push_back(std::stod(line.substr(a + 1, line.find(',', a + 1) - a - 1)));
    }
    return out;
}

}  // namespace

TEST(Trainer, GradientsMatchFiniteDifferencesInFloat64) {
    torch::manual_seed(3);
    LlamaHparams s = tiny_shape();
    s.n_vocab = 40;
    s.dim = 16;
    s.n_heads = 4;
    s.n_kv_heads = 2;
    s.ffn_dim = 24;
    LlamaModule model(s);
    model->to(torch::kFloat64);
    {  // norms away from 1 and matrices well above the init scale, so no gradient is tiny
        torch::NoGradGuard g;
        for (auto& [name, p] : model->named_weights()) {
            if (p.dim() == 1) p.add_(torch::randn_like(p) * 0.3);
            else p.mul_(8.0);
        }
    }
    const auto ids = torch::randint(0, s.n_vocab, {2, 7}, torch::kInt64);
    const auto targets = torch::randint(0, s.n_vocab, {2, 7}, torch::kInt64);
    auto loss_of = [&] {
        auto logits = model->forward(ids);
        return torch::nn::functional::cross_entropy(logits.reshape({-1, s.n_vocab}), targets.reshape(-1));
    };
    model->zero_grad();
    loss_of().backward();
    double worst = 0;
    int checked = 0;
    for (auto& [name, p] : model->named_weights()) {
        auto flat = p.detach().view(-1);
        auto grad = p.grad().view(-1);
        for (int k = 0; k < 3; ++k) {
            const int64_t i = (k * 7919 + 13) % flat.numel();
            const double h = 1e-5, orig = flat[i].item<double>();
            torch::NoGradGuard g;
            flat[i] = orig + h;
            const double up = loss_of().item<double>();
            flat[i] = orig - h;
            const double down = loss_of().item<double>();
            flat[i] = orig;
            const double fd = (up - down) / (2 * h), ad = grad[i].item<double>();
            // Central differences at h = 1e-5 are exact to ~1e-10 (truncation) plus ~1e-11
            // (rounding of a loss near 4); the bound leaves room for both.
            const double err = std::abs(fd - ad), bound = 1e-8 + 1e-6 * std::abs(fd);
            worst = std::max(worst, err / bound);
            ++checked;
            EXPECT_LT(err, bound) << name << "[" << i << "]: autograd " << ad << " vs finite difference " << fd;
        }
    }
    std::printf("gradient check: %d entries, max |autograd - finite difference| / (1e-8 + 1e-6 |fd|) = %.3g (must be < 1)\n",
                checked, worst);
}

TEST(Trainer, ExportedGgufGivesTheTrainersLogitsInTheRuntime) {
    const fs::path dir = scratch("export");
    // The tokenizer comes from a random-weight model of the same vocabulary size.
    LlamaHparams ms;
    ms.n_vocab = 512;
    write_random_llama((dir / "tok.gguf").string(), ms, DType::F32, 1);
    torch::manual_seed(5);
    LlamaModule model(tiny_shape());
    const std::vector<int32_t> prompt = {1, 300, 45, 77, 400, 2, 1, 9, 123, 511, 60, 61};
    torch::Tensor ref;
    {
        torch::NoGradGuard g;
        std::vector<int64_t> ids(prompt.begin(), prompt.end());
        ref = model->forward(torch::tensor(ids).view({1, -1}))[0];  // (T, V)
    }
    // F32 is not exact: the runtime keeps its KV cache in fp16, as llama.cpp does.
    struct Case {
        DType type;
        const char* name;
        double tol;
    };
    for (const Case c : {Case{DType::F32, "f32", 1e-3}, Case{DType::F16, "f16", 2e-2}, Case{DType::Q8_0, "q8_0", 5e-2}}) {
        const std::string path = (dir / (std::string("m-") + c.name + ".gguf")).string();
        export_gguf(model, (dir / "tok.gguf").string(), path, c.type, "test");
        auto m = Model::load(path);
        Context ctx(*m, 64, 1);
        ctx.eval(prompt, /*all_logits=*/true);
        const auto got = ctx.logits();
        double worst = 0, scale = 0;
        for (size_t t = 0; t < prompt.size(); ++t) {
            for (int64_t v = 0; v < 512; ++v) {
                const double r = ref[static_cast<int64_t>(t)][v].item<double>();
                worst = std::max(worst, std::abs(r - got[t * 512 + static_cast<size_t>(v)]));
                scale = std::max(scale, std::abs(r));
            }
        }
        std::printf("export %s: max |logit diff| %.3g (max |logit| %.3g, tolerance %.3g)\n", c.name, worst, scale, c.tol);
        EXPECT_LT(worst, c.tol) << c.name;
    }
    fs::remove_all(dir);
}

TEST(Trainer, TinyModelLearnsTheFixtureAndResumesExactly) {
    const fs::path dir = scratch("fit");
    fs::create_directories(dir / "data");
    write_fixture_shards(dir / "data", 512);
    const TrainConfig whole = tiny_config(dir / "data", dir / "whole");
    std::printf("fixture model: %lld parameters\n", static_cast<long long>(whole.shape.parameters()));
    const TrainSummary a = run_training(whole, {});
    const std::vector<double> la = csv_losses(dir / "whole" / "loss.csv");
    ASSERT_EQ(la.size(), 40u);
    std::printf("loss: step 1 %.3f, step 40 %.3f, val %.3f (threshold 2.5; ln 512 = %.2f)\n", la.front(), la.back(),
                a.last_val_loss, std::log(512.0));
    EXPECT_GT(la.front(), 5.5);
    EXPECT_LT(a.last_val_loss, 2.5);

    // A crash after step 13 (the last checkpoint is step 10), then a second run on the same out.
    TrainConfig killed = tiny_config(dir / "data", dir / "killed");
    killed.log_every = 1;  // the callback sees every step
    struct Crash {};
    EXPECT_THROW(run_training(killed, [](const StepReport& r) {
                     if (r.step == 13) throw Crash{};
                 }),
                 Crash);
    const TrainSummary b = run_training(killed, {});
    EXPECT_TRUE(b.resumed);
    const std::vector<double> lb = csv_losses(dir / "killed" / "loss.csv");
    ASSERT_EQ(lb.size(), la.size());
    double worst = 0;
    for (size_t i = 0; i < la.size(); ++i) worst = std::max(worst, std::abs(la[i] - lb[i]));
    std::printf("resumed run vs uninterrupted: max |loss diff| %.3g over %zu steps (tolerance 1e-5)\n", worst, la.size());
    EXPECT_LT(worst, 1e-5);

    // Leave the trained model for the llama.cpp check.
    const char* fixture = std::getenv("MICROLM_TRAIN_FIXTURE_DIR");
    if (fixture) {
        LlamaHparams ms;
        ms.n_vocab = 512;
        fs::create_directories(fixture);
        write_random_llama((fs::path(fixture) / "tok.gguf").string(), ms, DType::F32, 1);
        LoadedCheckpoint ck = load_checkpoint((dir / "whole" / "checkpoint.pt").string());
        for (const char* t : {"f32", "q8_0"}) {
            export_gguf(ck.model, (fs::path(fixture) / "tok.gguf").string(),
                        (fs::path(fixture) / (std::string("trained-") + t + ".gguf")).string(),
                        std::string(t) == "f32" ? DType::F32 : DType::Q8_0, "fixture");
        }
    }
    fs::remove_all(dir);
}

// bf16 autocast (AMX through oneDNN where the CPU has it) against fp32 on the same batches:
// the loss curves agree to within bf16's ~3 significant digits compounded over 40 steps.
TEST(Trainer, Bf16AutocastTracksFp32OnTheFixture) {
    const fs::path dir = scratch("bf16");
    fs::create_directories(dir / "data");
    write_fixture_shards(dir / "data", 512);
    const TrainSummary a = run_training(tiny_config(dir / "data", dir / "fp32"), {});
    TrainConfig bf = tiny_config(dir / "data", dir / "bf16");
    bf.precision = "bf16";
    EXPECT_TRUE(uses_bf16(bf));
    const TrainSummary b = run_training(bf, {});
    const std::vector<double> la = csv_losses(dir / "fp32" / "loss.csv"), lb = csv_losses(dir / "bf16" / "loss.csv");
    ASSERT_EQ(la.size(), lb.size());
    double worst = 0;
    for (size_t i = 0; i < la.size(); ++i) worst = std::max(worst, std::abs(la[i] - lb[i]));
    const double val_rel = std::abs(a.last_val_loss - b.last_val_loss) / a.last_val_loss;
    std::printf("bf16 vs fp32: max |train loss diff| %.4f over %zu steps (tolerance 0.15); final val %.4f vs %.4f, "
                "relative diff %.4f (tolerance 0.05)\n",
                worst, la.size(), b.last_val_loss, a.last_val_loss, val_rel);
    EXPECT_LT(worst, 0.15);
    EXPECT_LT(val_rel, 0.05);
    fs::remove_all(dir);
}

// A run can start from an exported GGUF as well as from a checkpoint (resuming on another
// machine from a committed model): F32 gives the checkpoint's weights exactly, Q8_0 within
// its rounding (half a step of the block scale, <= max|w| / 254 per block).
TEST(Trainer, InitFromExportedGgufGivesTheCheckpointsWeights) {
    const fs::path dir = scratch("init_gguf");
    fs::create_directories(dir / "data");
    write_fixture_shards(dir / "data", 512);
    TrainConfig c = tiny_config(dir / "data", dir / "run");
    c.steps = 5;
    run_training(c, {});
    LoadedCheckpoint ck = load_checkpoint((dir / "run" / "checkpoint.pt").string());
    LlamaHparams ms;
    ms.n_vocab = 512;
    write_random_llama((dir / "tok.gguf").string(), ms, DType::F32, 1);
    for (const DType t : {DType::F32, DType::Q8_0}) {
        const std::string path = (dir / (std::string(dtype_name(static_cast<uint32_t>(t))) + ".gguf")).string();
        export_gguf(ck.model, (dir / "tok.gguf").string(), path, t, "fixture");
        LlamaModule m(tiny_shape());
        EXPECT_EQ(init_weights_from(path, m), 0);
        double worst = 0, max_abs = 0;
        auto got = m->named_weights(), want = ck.model->named_weights();
        for (size_t i = 0; i < got.size(); ++i) {
            worst = std::max(worst, (got[i].second - want[i].second).abs().max().item<double>());
            max_abs = std::max(max_abs, want[i].second.abs().max().item<double>());
        }
        // Q8_0: d = max|block| / 127 stored as fp16; error <= d/2 + 127 |d - fp16(d)|.
        const double tol = t == DType::F32 ? 0.0 : max_abs / 127.0 * (0.5 + 127.0 / 2048.0);
        std::printf("init_from %s: max |weight diff| %.3g (tolerance %.3g)\n", path.c_str(), worst, tol);
        EXPECT_LE(worst, tol);
    }
    TrainConfig wrong = tiny_config(dir / "data", dir / "wrong");
    wrong.shape.dim = 32;
    LlamaModule w(wrong.shape);
    EXPECT_THROW(init_weights_from((dir / "F32.gguf").string(), w), Error);
    fs::remove_all(dir);
}

// The distillation term against a float64 loop over the definition, at T = 1 and T = 2:
// T^2 * sum_v p_t(v) (log p_t(v) - log p_s(v)), p = softmax(logits / T); zero for equal logits.
TEST(Trainer, DistillKlMatchesTheDefinitionInFloat64) {
    torch::manual_seed(11);
    const int64_t N = 6, V = 37;
    const auto s = torch::randn({N, V}) * 3, t = torch::randn({N, V}) * 3;
    for (const double T : {1.0, 2.0}) {
        const auto got = distill_kl(s, t, T);
        ASSERT_EQ(got.sizes(), torch::IntArrayRef({N}));
        double worst = 0;
        for (int64_t i = 0; i < N; ++i) {
            auto log_softmax = [&](const torch::Tensor& row) {
                std::vector<double> x(static_cast<size_t>(V));
                double mx = -1e300, z = 0;
                for (int64_t v = 0; v < V; ++v) mx = std::max(mx, x[static_cast<size_t>(v)] = row[v].item<double>() / T);
                for (double a : x) z += std::exp(a - mx);
                for (double& a : x) a = a - mx - std::log(z);
                return x;
            };
            const auto ls = log_softmax(s[i]), lt = log_softmax(t[i]);
            double kl = 0;
            for (size_t v = 0; v < ls.size(); ++v) kl += std::exp(lt[v]) * (lt[v] - ls[v]);
            worst = std::max(worst, std::abs(T * T * kl - got[i].item<double>()));
        }
        std::printf("distill_kl T=%.0f: max |diff| vs float64 %.3g (tolerance 1e-5)\n", T, worst);
        EXPECT_LT(worst, 1e-5);
        EXPECT_LT(distill_kl(t, t, T).abs().max().item<double>(), 1e-6);
    }
}

// Pure distillation (weight 1: the labels never enter the objective) from a teacher trained
// on the fixture teaches a fresh student the fixture: in the same 40 steps its label CE falls
// from ln 512 to below 1.0 (plain training's threshold is 2.5; the teacher reaches ~0.3).
// A teacher of another vocabulary (size or tokens) is refused by name.
TEST(Trainer, DistillationFromATrainedTeacherTeachesTheFixture) {
    const fs::path dir = scratch("distill");
    fs::create_directories(dir / "data");
    write_fixture_shards(dir / "data", 512);
    const TrainSummary t = run_training(tiny_config(dir / "data", dir / "teacher"), {});
    LlamaHparams ms;
    ms.n_vocab = 512;
    write_random_llama((dir / "tok.gguf").string(), ms, DType::F32, 1);
    LoadedCheckpoint ck = load_checkpoint((dir / "teacher" / "checkpoint.pt").string());
    export_gguf(ck.model, (dir / "tok.gguf").string(), (dir / "teacher.gguf").string(), DType::F32, "teacher");

    TrainConfig s = tiny_config(dir / "data", dir / "student");
    s.seed = 99;
    s.teacher = (dir / "teacher.gguf").string();
    s.distill_weight = 1.0;
    s.distill_temperature = 1.0;
    const TrainSummary r = run_training(s, {});
    const std::vector<double> ls = csv_losses(dir / "student" / "loss.csv");
    std::printf("distilled student: label CE step 1 %.3f, val %.3f (teacher's val %.3f; threshold 1.0)\n", ls.front(),
                r.last_val_loss, t.last_val_loss);
    EXPECT_GT(ls.front(), 5.5);
    EXPECT_LT(r.last_val_loss, 1.0);

    // The same size but other tokens: refused too, where the student's tokens are known.
    std::vector<std::string> other_tokens(512, "x");
    EXPECT_THROW(load_teacher((dir / "teacher.gguf").string(), 512, other_tokens), Error);
    ms.n_vocab = 600;
    write_random_llama((dir / "other.gguf").string(), ms, DType::F32, 1);
    EXPECT_THROW(load_teacher((dir / "other.gguf").string(), 512), Error);
    fs::remove_all(dir);
}
