using Peft.Models.Bert;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.Bert;

/// <summary>BERT declares query/key/value as sibling projections; with PEFT's default targets (query, value) the two adapted
/// ones run as one product and the classifier's logits and gradients are those of the separate layers.</summary>
[Collection(TinyBert.Collection)]
public sealed class BertSiblingFusionTests
{
    [Fact]
    public void QueryAndValueRunAsOneProductWithTheSameLogitsAndGradients()
    {
        using var model = TinyBert.CreateWithLoRA(41);
        using (no_grad())
        {
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.Contains("lora_B", StringComparison.Ordinal)) p.normal_(0, 0.1);
            }
        }

        var ids = TinyBert.RandomIds(42, 3, 7);
        (Tensor Logits, Tensor[] Grads) Step()
        {
            var logits = model.call(ids);
            logits.square().sum().backward();
            var trainable = model.parameters().Where(p => p.requires_grad).ToArray();
            var grads = trainable.Select(p => p.grad!.clone()).ToArray();
            foreach (var p in trainable) p.grad!.zero_();
            return (logits.detach().clone(), grads);
        }

        var separate = Step();
        var report = model.FuseSiblingProjections();
        Assert.Equal(2, report.Linked.Count);
        Assert.All(report.Linked, g => Assert.Equal(new[] { "query", "value" }, g.Members));
        var fused = Step();
        Assert.All(report.Linked, g => Assert.Equal(1, g.FusedProducts));
        Assert.True((separate.Logits - fused.Logits).abs().max().ToDouble() < 1e-5);
        for (int i = 0; i < fused.Grads.Length; i++)
        {
            double scale = Math.Max(1e-3, separate.Grads[i].abs().max().ToDouble());
            Assert.True((separate.Grads[i] - fused.Grads[i]).abs().max().ToDouble() <= 1e-4 * scale, $"gradient {i}");
        }
    }
}
