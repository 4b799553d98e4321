using Peft.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Llama;

/// <summary>
/// Llama declares its sibling projections (q/k/v, gate/up); linked, they run as one product each and the model computes the
/// same logits and gradients as with separate layers, in a full forward, in cached generation and with PEFT's q/v targets.
/// </summary>
public sealed class LlamaSiblingFusionTests
{
    private static LlamaForCausalLM AllLinear(int seed)
    {
        var model = TinyLlama.Create(seed);
        model.ApplyTargets(new PeftTargets(TargetModules.AllLinear, new LoRAOptions(Rank: 4, Alpha: 8)));
        using (no_grad())
        {
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.Contains("lora_B", StringComparison.Ordinal)) p.normal_(0, 0.1); // off the zero init
            }
        }

        return model;
    }

    private static (Tensor Logits, Tensor[] Grads) Step(LlamaForCausalLM model, Tensor ids)
    {
        var logits = model.call(ids);
        var loss = nn.functional.cross_entropy(logits[.., ..^1].reshape(-1, 64), ids[.., 1..].reshape(-1));
        loss.backward();
        var trainable = model.parameters().Where(p => p.requires_grad).ToArray();
        var grads = trainable.Select(p => p.grad!.clone()).ToArray();
        foreach (var p in trainable) p.grad!.zero_();
        return (logits.detach().clone(), grads);
    }

    private static double MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().ToDouble();

    [Fact]
    public void AllLinearLoRAComputesTheSameStepFused()
    {
        using var model = AllLinear(31);
        var ids = TinyLlama.RandomIds(32, 2, 9);
        var separate = Step(model, ids);

        var report = model.FuseSiblingProjections();
        Assert.Equal(4, report.Linked.Count); // 2 layers x (q/k/v, gate/up)
        Assert.Empty(report.Skipped);
        Assert.Contains(report.Linked, g => g.ModulePath == "model.layers.1.mlp" && g.Members.SequenceEqual(new[] { "gate_proj", "up_proj" }));
        var fused = Step(model, ids);
        Assert.All(report.Linked, g => Assert.Equal(1, g.FusedProducts));
        Assert.True(MaxDiff(separate.Logits, fused.Logits) < 1e-5, $"logits differ by {MaxDiff(separate.Logits, fused.Logits):E2}");
        Assert.Equal(separate.Grads.Length, fused.Grads.Length);
        for (int i = 0; i < fused.Grads.Length; i++)
        {
            double scale = Math.Max(1e-3, separate.Grads[i].abs().max().ToDouble());
            Assert.True(MaxDiff(separate.Grads[i], fused.Grads[i]) <= 1e-4 * scale, $"gradient {i} differs by {MaxDiff(separate.Grads[i], fused.Grads[i]):E2}");
        }
    }

    [Fact]
    public void CachedGenerationEqualsTheSeparateModel()
    {
        using var model = AllLinear(33);
        var prompt = TinyLlama.RandomIds(34, 1, 5);
        Tensor expected;
        using (no_grad()) expected = model.Generate(prompt, 6);
        var report = model.FuseSiblingProjections();
        Tensor actual;
        using (no_grad()) actual = model.Generate(prompt, 6);
        Assert.Equal(expected.data<long>().ToArray(), actual.data<long>().ToArray());
        Assert.All(report.Linked, g => Assert.True(g.FusedProducts >= 6, $"{g.ModulePath}: {g.FusedProducts} fused products"));
    }

    [Fact]
    public void PeftsDefaultTargetsLinkQueryAndValueAndLeaveTheMlpSeparate()
    {
        using var model = TinyLlama.CreateWithLoRA(35);
        var report = model.FuseSiblingProjections();
        Assert.Equal(2, report.Linked.Count);
        Assert.All(report.Linked, g => Assert.Equal(new[] { "q_proj", "v_proj" }, g.Members));
        Assert.Equal(2, report.Skipped.Count); // the two layers' gate/up pairs: not adapted
        Assert.All(report.Skipped, s => Assert.EndsWith(".mlp", s.ModulePath, StringComparison.Ordinal));
        var ids = TinyLlama.RandomIds(36, 1, 7);
        using (no_grad())
        {
            var fused = model.call(ids);
            model.UnfuseSiblingProjections();
            var separate = model.call(ids);
            Assert.True(MaxDiff(separate, fused) < 1e-5);
        }
    }
}
