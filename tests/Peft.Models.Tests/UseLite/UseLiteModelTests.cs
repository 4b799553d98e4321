using Peft.Models.UseLite;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Models.Tests.UseLite;

/// <summary>The converter's names and layout, and LoRA added to the network by configuration (<see cref="UseLiteTargets"/>).</summary>
[Collection(UseLiteCollection.Name)]
public sealed class UseLiteModelTests(UseLiteFixture fixture)
{
    [Fact]
    public void Converted_file_has_exactly_the_encoder_state_dict_with_matching_shapes()
    {
        using var reader = SafetensorsFile.Open(fixture.Model.WeightsPath);
        using var encoder = new UseLiteEncoder();
        Assert.Empty(encoder.AdapterNames());   // the encoder declares no adapter
        var expected = encoder.named_parameters()
            .Select(p => (p.name, p.parameter.shape))
            .Concat(encoder.named_buffers().Select(b => (b.name, b.buffer.shape)))
            .ToDictionary(p => p.name, p => p.shape);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), reader.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (var info in reader.Tensors) Assert.Equal(expected[info.Name], info.Shape);
        // Every non-scalar float32 weight of the manifest is used exactly once (the scalars are checked graph constants).
        var manifestFloats = UseLiteConverter.ReadWeights(fixture.Model.PackageDirectory).Values
            .Where(w => w.Floats is { Length: > 1 }).Sum(w => (long)w.Floats!.Length);
        Assert.Equal(manifestFloats, reader.Tensors.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)));
    }

    [Fact]
    public void Query_key_value_projections_are_the_fused_kernel_split_and_transposed()
    {
        var weights = UseLiteConverter.ReadWeights(fixture.Model.PackageDirectory);
        var fused = weights["module/Encoder_en/KonaTransformer/Encode/Layer_1/TransformerLayer/MultiheadAttention/qkv_transform_single/kernel/part_0"];
        Assert.Equal(new long[] { 1, 1, 512, 1536 }, fused.Shape);
        using var reader = SafetensorsFile.Open(fixture.Model.WeightsPath);
        using var k = reader.ReadTensor("layers.1.k_proj.weight");
        // PyTorch k_proj.weight[o, i] is the TensorFlow kernel[i, 512 + o].
        Assert.Equal(fused.Floats![3 * 1536 + 512 + 7], k[7, 3].item<float>());
        Assert.Equal(fused.Floats![100 * 1536 + 512 + 511], k[511, 100].item<float>());
    }

    [Fact]
    public void LoRA_by_targets_leaves_the_pretrained_output_unchanged_and_is_the_only_trainable_part()
    {
        // A model of its own: the fixture's is shared and must stay without adapters.
        using var model = UseLiteModel.Load(fixture.Model.PackageDirectory, fixture.Model.WeightsPath);
        var encoder = model.Encoder;
        var (ids, mask) = model.Batch(["the fox jumped over the lazy dog", "lorem ipsum"]);
        using (ids)
        using (mask)
        {
            Tensor plain;
            using (no_grad()) plain = encoder.call(ids, mask);
            var adapted = encoder.ApplyTargets(new PeftTargets(UseLiteTargets.LoRA, new LoRAOptions(Rank: 4)));
            Assert.Equal(12, adapted.Count);
            using (plain)
            using (no_grad())
            using (var withLoRA = encoder.call(ids, mask))
            {
                // Identical up to float rounding (the adapted layer may take a different matmul path than the plain one).
                double maxDifference = (withLoRA - plain).abs().max().item<float>();
                Assert.True(maxDifference < 1e-6, $"max |adapted - plain| = {maxDifference}");
            }
        }

        var trainable = encoder.TrainableParameters().ToList();
        long expected = 0;
        for (int layer = 0; layer < UseLiteConfig.Layers; layer++)
        {
            long d = UseLiteConfig.LayerInputDim(layer), h = UseLiteConfig.HiddenDim, f = UseLiteConfig.FeedForwardDim;
            expected += 3 * 4 * (d + d) + 4 * (d + h) + 4 * (h + f) + 4 * (f + h);
        }
        Assert.Equal(expected, trainable.Sum(p => p.numel()));
        Assert.Equal(24, trainable.Count);
    }
}
