using Peft.Training;
using Peft.Training.Masks;
using TorchSharp.Modules;

namespace Peft.Conformance.Tests;

/// <summary>
/// One row of the matrix's selective part: a method that adds no adapter but chooses which existing weights (or which of
/// their entries) train, applied to <see cref="TinyStack"/>: layer freezing (Telly), SPT and ID³.
/// <see cref="SelectiveConformanceTests"/> runs the same checks on every row: choosing leaves the outputs bit-equal, and
/// training changes the chosen parameters and entries only, every other weight bit for bit as it was.
/// </summary>
/// <param name="Name">The row's name.</param>
/// <param name="Select">Chooses what trains in a fresh model.</param>
public sealed record SelectiveConformanceCase(string Name, Func<TinyStack, SelectiveRun> Select)
{
    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>What a selective method trains: the parameters the trainer updates, the masks that keep unchosen entries of
/// some of them fixed (null: whole parameters), the callbacks the trainer runs, and what to dispose after the run.</summary>
/// <param name="Parameters">The parameters the trainer updates.</param>
/// <param name="Masks">The entry masks, or null.</param>
/// <param name="Callbacks">The trainer's callbacks (the masks' restore, ID³'s unmasking).</param>
/// <param name="Owner">Disposed after the run, or null.</param>
public sealed record SelectiveRun(IReadOnlyList<Parameter> Parameters, ParameterMasks? Masks, IReadOnlyList<ITrainingCallback> Callbacks, IDisposable? Owner);
