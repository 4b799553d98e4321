using Peft.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Conformance.Tests;

/// <summary>The selective methods' rows (<see cref="SelectiveConformanceCase"/>) on <see cref="TinyStack"/>: Telly-style
/// freezing of the embedding and the bottom block (the rest trains), SPT with a budget of 40 entries of the attention and
/// feed-forward weights (rank 2 where an allocation is dense enough for LoRA), and ID³ growing a 24-entry mask over the same
/// weights in 3 unmasking steps.</summary>
public static class SelectiveRows
{
    private static readonly string[] s_weights =
        ["blocks.0.attn.q.weight", "blocks.0.fc1.weight", "blocks.1.attn.v.weight", "blocks.1.fc2.weight"];

    /// <summary>The rows.</summary>
    public static readonly SelectiveConformanceCase[] Cases =
    {
        new("freeze-bottom", model =>
        {
            model.FreezeLayers(new LayerFreezing(bottom: 1));
            return new SelectiveRun(model.TrainableParameters().ToList(), null, [], null);
        }),
        new("spt", model =>
        {
            FreezeAll(model);
            var plan = Spt.Plan(model, s_weights, b => Loss(model, b), new SptOptions(Budget: 40, SensitivityBatches: 2, Rank: 2, Alpha: 1));
            var spt = Spt.Apply(model, plan);
            return new SelectiveRun(spt.Parameters, spt.Masks, [spt.Masks], spt);
        }),
        new("id3", model =>
        {
            FreezeAll(model);
            var id3 = new Id3Unmasking(model, s_weights, new Id3Options(Budget: 24, UnmaskingSteps: 3, Interval: 1, Seed: 5));
            return new SelectiveRun(id3.Parameters, id3.Masks, [id3], id3);
        }),
    };

    /// <summary>The loss the rows calibrate and train on: the squared outputs of batch <paramref name="batch"/>.</summary>
    public static Tensor Loss(TinyStack model, int batch) => model.call(Ids(batch)).square().mean();

    /// <summary>Token ids of batch <paramref name="batch"/> (2 x 5, seeded).</summary>
    public static Tensor Ids(int batch) => randint(0, TinyModel.Vocabulary, [2, 5], generator: new Generator((ulong)(31 + batch)), dtype: ScalarType.Int64);

    private static void FreezeAll(TinyStack model)
    {
        foreach (var p in model.parameters()) p.requires_grad = false;
    }
}
