using Peft.Models.UseLite;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.UseLite;

/// <summary>USE-lite's transformer layer gets its q/k/v group from the generator (forward calls the three projections with
/// one local); linked, the encoder's output is that of the separate layers.</summary>
public sealed class UseLiteSiblingFusionTests
{
    [Fact]
    public void TheGeneratedGroupLinksQueryKeyAndValue_WithTheSameOutput()
    {
        using var layer = new UseLiteTransformerLayer(1);
        Assert.Equal(new[] { "q_proj", "k_proj", "v_proj" }, Assert.Single(Assert.IsAssignableFrom<ISiblingProjections>(layer).SiblingProjections));

        manual_seed(3);
        using var encoder = new UseLiteEncoder();
        encoder.ApplyTargets(new PeftTargets(UseLiteTargets.LoRA, new LoRAOptions(Rank: 4, Alpha: 8)));
        using (no_grad())
        {
            foreach (var (name, p) in encoder.named_parameters())
            {
                if (name.Contains("lora_B", StringComparison.Ordinal)) p.normal_(0, 0.05);
            }
        }

        manual_seed(4);
        using var ids = randint(1, 100, new long[] { 2, 9 }, dtype: ScalarType.Int64);
        using var mask = ones(2, 9, dtype: ScalarType.Int64);
        using (no_grad())
        {
            encoder.eval();
            using var separate = encoder.call(ids, mask);
            var report = encoder.FuseSiblingProjections();
            Assert.NotEmpty(report.Linked);
            Assert.All(report.Linked, g => Assert.Equal(new[] { "q_proj", "k_proj", "v_proj" }, g.Members));
            using var fused = encoder.call(ids, mask);
            Assert.All(report.Linked, g => Assert.Equal(1, g.FusedProducts));
            Assert.True((separate - fused).abs().max().ToDouble() < 1e-5);
        }
    }
}
