namespace Peft.Checkpoints;

/// <summary>
/// A tensor that a model built from a config.json would have, computed without building it: for
/// <see cref="HfCheckpoint.EnsureFits"/>.
/// </summary>
/// <param name="Name">The model's state-dict name (before <see cref="CheckpointLoadOptions"/> mapping, as <see cref="HfCheckpoint.LoadInto"/> expects).</param>
/// <param name="Shape">The shape the model would give it.</param>
/// <param name="ConfigFields">The config.json keys that decide its shape or existence (e.g. <c>vocab_size</c>, <c>hidden_size</c>), named in errors.</param>
public sealed record ExpectedTensor(string Name, long[] Shape, IReadOnlyList<string> ConfigFields);
