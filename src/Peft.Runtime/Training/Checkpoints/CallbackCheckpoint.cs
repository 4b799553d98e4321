using Peft.Serialization;
using static TorchSharp.torch;

namespace Peft.Training.Checkpoints;

/// <summary>Writes and restores the state of the <see cref="ICheckpointedCallback"/>s of a run (<c>callbacks.safetensors</c>).</summary>
internal static class CallbackCheckpoint
{
    /// <summary>The callbacks whose state a checkpoint holds, checked for unique names.</summary>
    public static List<ICheckpointedCallback> Of(TrainingOptions options, string path)
    {
        var callbacks = options.Callbacks.OfType<ICheckpointedCallback>().ToList();
        var duplicate = callbacks.GroupBy(c => c.StateName, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new CheckpointException(path, $"two training callbacks have the state name '{duplicate.Key}'; give each checkpointed callback its own StateName.");
        }

        return callbacks;
    }

    /// <summary>Every callback's tensors, <c>{StateName}/{key}</c>.</summary>
    public static List<KeyValuePair<string, Tensor>> Collect(List<ICheckpointedCallback> callbacks)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var callback in callbacks)
        {
            foreach (var (key, value) in callback.CheckpointState())
            {
                tensors.Add(new($"{callback.StateName}/{key}", value.detach().cpu()));
            }
        }

        return tensors;
    }

    /// <summary>Reads the file (or its absence) and checks it against the run's callbacks; returns each callback's state.</summary>
    public static List<(ICheckpointedCallback Callback, Dictionary<string, Tensor> State)> Read(string dir, CheckpointManifest manifest, List<ICheckpointedCallback> callbacks)
    {
        string file = Path.Combine(dir, CheckpointStore.CallbacksFileName);
        var result = new List<(ICheckpointedCallback, Dictionary<string, Tensor>)>();
        if (!manifest.Files.ContainsKey(CheckpointStore.CallbacksFileName))
        {
            if (callbacks.Count > 0)
            {
                throw new CheckpointException(dir, $"it holds no callback state, but this run has the checkpointed callback '{callbacks[0].StateName}'; it was written by a run without it.");
            }

            return result;
        }

        try
        {
            using var reader = SafetensorsFile.Open(file);
            var byPrefix = reader.Tensors.Select(t => t.Name).GroupBy(n => n.Split('/')[0], StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.ToList(), StringComparer.Ordinal);
            foreach (var callback in callbacks)
            {
                if (!byPrefix.Remove(callback.StateName, out var keys))
                {
                    throw new CheckpointException(file, $"it holds no state for the callback '{callback.StateName}'; was the run's callback list changed?");
                }

                result.Add((callback, keys.ToDictionary(k => k[(callback.StateName.Length + 1)..], reader.ReadTensor, StringComparer.Ordinal)));
            }

            if (byPrefix.Count > 0)
            {
                throw new CheckpointException(file, $"it holds state for the callback '{byPrefix.Keys.First()}', which this run does not have.");
            }
        }
        catch (Exception ex) when (ex is SafetensorsFormatException or IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(file, $"the file cannot be read: {ex.Message}", ex);
        }

        return result;
    }

    /// <summary>Hands each callback its state.</summary>
    public static void Restore(string dir, List<(ICheckpointedCallback Callback, Dictionary<string, Tensor> State)> states)
    {
        foreach (var (callback, state) in states)
        {
            try
            {
                callback.RestoreCheckpointState(state);
            }
            catch (ArgumentException ex)
            {
                throw new CheckpointException(Path.Combine(dir, CheckpointStore.CallbacksFileName), $"the callback '{callback.StateName}' refused its state: {ex.Message}", ex);
            }
        }
    }
}
