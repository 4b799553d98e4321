using Peft.Training.Masks;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft;

/// <summary>What SPT decided for each candidate weight (<see cref="Spt.Plan"/>).</summary>
/// <param name="Options">The settings it was made with.</param>
/// <param name="Weights">Per weight: its name, shape, selected count, tuning and selected entries.</param>
public sealed record SptPlan(SptOptions Options, IReadOnlyList<SptPlan.Weight> Weights)
{
    /// <summary>One candidate weight.</summary>
    /// <param name="Name">Its parameter name.</param>
    /// <param name="Shape">Its shape.</param>
    /// <param name="Count">How many of its entries are among the top τ.</param>
    /// <param name="Tuning">How it is tuned.</param>
    /// <param name="Mask">Its selected entries (boolean, its shape).</param>
    public sealed record Weight(string Name, long[] Shape, long Count, SptTuning Tuning, Tensor Mask);
}

/// <summary>An applied SPT plan: the masks to register as a training callback and everything that trains.</summary>
/// <param name="Plan">The plan.</param>
/// <param name="Masks">The unstructured and fully tuned weights' masks (register in <c>TrainingOptions.Callbacks</c>).</param>
/// <param name="Parameters">The LoRA parameters of the structured matrices and the masked weights.</param>
public sealed record SptTraining(SptPlan Plan, ParameterMasks Masks, IReadOnlyList<Parameter> Parameters) : IDisposable
{
    /// <summary>How many values train: the LoRA parameters plus the masks' trained entries.</summary>
    public long TrainedCount => Parameters.Except(Masks.Parameters).Sum(p => p.numel()) + Masks.TrainedCount;

    /// <summary>Frees the masks and the plan's mask tensors.</summary>
    public void Dispose()
    {
        Masks.Dispose();
        foreach (var weight in Plan.Weights)
        {
            weight.Mask.Dispose();
        }
    }
}
