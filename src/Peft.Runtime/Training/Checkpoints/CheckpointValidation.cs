using System.Buffers.Binary;
using System.Globalization;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Training.Checkpoints;

/// <summary>
/// The checks of a training checkpoint that <see cref="CheckpointStore.Load"/> makes before it changes anything: the
/// manifest (through <see cref="JsonFile"/> and <see cref="CheckpointManifest.FromJson"/>), the listed files' sizes and
/// hashes, the optimizer's step counts against the checkpoint's step, and the random-number generator states, which
/// libtorch would otherwise reject by aborting the process.
/// </summary>
internal static class CheckpointValidation
{
    /// <summary>Reads and validates <c>manifest.json</c> and the files it lists (see <see cref="CheckpointStore.ReadManifest"/>).</summary>
    internal static CheckpointManifest ReadManifest(string dir)
    {
        if (!Directory.Exists(dir))
        {
            throw new CheckpointException(dir, File.Exists(dir) ? "the checkpoint path is a file, not a directory." : "the checkpoint directory does not exist.");
        }

        string manifestPath = Path.Combine(dir, CheckpointStore.ManifestFileName);
        System.Text.Json.Nodes.JsonObject obj;
        try
        {
            obj = JsonFile.ReadObject(manifestPath, JsonFileKind.TrainingManifest);
        }
        catch (FileNotFoundException e)
        {
            throw new CheckpointException(manifestPath, "the manifest is missing; this is not a complete checkpoint (delete the directory to resume from an older one).", e);
        }

        var manifest = CheckpointManifest.FromJson(obj, manifestPath);
        foreach (string required in new[] { CheckpointStore.ParametersFileName, CheckpointStore.OptimizerFileName, CheckpointStore.RandomStateFileName })
        {
            if (!manifest.Files.ContainsKey(required))
            {
                throw new CheckpointException(manifestPath, "files", $"the manifest does not list {required}.");
            }
        }

        foreach (var (name, entry) in manifest.Files)
        {
            string file = Path.Combine(dir, name);
            try
            {
                if (RegularFile.Problem(file) is { } what)
                {
                    throw new CheckpointException(file, $"the file listed in the manifest is {what}.");
                }

                long length = new FileInfo(file).Length;
                if (length != entry.Bytes)
                {
                    throw new CheckpointException(file, $"the file has {length} bytes; the manifest says {entry.Bytes} (truncated or modified).");
                }

                string hash = DurableFiles.Sha256(file);
                if (!string.Equals(hash, entry.Sha256, StringComparison.OrdinalIgnoreCase))
                {
                    throw new CheckpointException(file, $"the file's SHA-256 is {hash}; the manifest says {entry.Sha256} (corrupted or modified).");
                }
            }
            catch (FileNotFoundException)
            {
                throw new CheckpointException(file, "the file listed in the manifest is missing.");
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new CheckpointException(file, $"the file cannot be read: {ex.Message}", ex);
            }
        }

        return manifest;
    }

    /// <summary>
    /// Every <c>…/step</c> entry of the optimizer file's metadata must be an integer in [0, <paramref name="step"/>]: the
    /// optimizer cannot have taken more steps than the trainer (a step of 2^63 − 1 would silently turn bias correction off).
    /// </summary>
    internal static void EnsureOptimizerSteps(string file, int step)
    {
        SafetensorsReader reader;
        try
        {
            reader = SafetensorsFile.Open(file);
        }
        catch (Exception ex) when (ex is SafetensorsFormatException or IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(file, $"the file cannot be read: {ex.Message}", ex);
        }

        using (reader)
        {
            foreach (var (key, text) in reader.Metadata)
            {
                if (!key.EndsWith("/step", StringComparison.Ordinal)) continue;
                if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value) || value > step)
                {
                    throw new CheckpointException(file, key,
                        $"the optimizer step count {key} is \"{(text.Length > 40 ? text[..40] + "..." : text)}\"; it must be an integer in [0, {step}] (the checkpoint's step).");
                }
            }
        }
    }

    // libtorch's CPU generator state (ATen/CPUGeneratorImpl.cpp, CPUGeneratorImplState), as get_state() writes it:
    //   0 uint64 the_initial_seed | 8 int32 left | 12 int32 seeded | 16 uint64 next | 24 uint64 state[624]
    //   5016 double normal_x | 5024 double normal_y | 5032 double normal_rho | 5040 int32 normal_is_valid (+4 padding)
    //   5048 float next_float_normal_sample | 5052 bool is_next_float_normal_sample_valid (+3 padding)
    // set_state() throws a C++ exception for any other size or dtype and for an invalid mt19937 state (seeded false,
    // left outside [1, 624], next above 624); TorchSharp does not translate it, so the process aborts. Hence these checks.
    private const int MersenneStateWords = 624;
    private const int OffsetLeft = 8, OffsetSeeded = 12, OffsetNext = 16, OffsetState = 24, OffsetNormalY = 5024,
        OffsetNormalValid = 5040, OffsetFloatSample = 5048, OffsetFloatValid = 5052, LayoutSize = 5056;

    private static readonly Lazy<(long Size, bool LayoutKnown)> s_generatorLayout = new(ProbeGeneratorLayout);

    /// <summary>
    /// Checks that <paramref name="state"/> is a state libtorch's CPU generator accepts: a U8 tensor of exactly the size
    /// a fresh generator's <c>get_state()</c> has, whose mt19937 fields are valid (where the layout is the known one).
    /// </summary>
    internal static void EnsureGeneratorState(string file, string key, Tensor state)
    {
        var (size, layoutKnown) = s_generatorLayout.Value;
        if (state.dtype != ScalarType.Byte || state.dim() != 1 || state.numel() != size)
        {
            throw new CheckpointException(file, key,
                $"the generator state {key} is {state.dtype} [{string.Join(", ", state.shape)}]; libtorch's CPU generator needs Byte [{size}]. Refusing to restore it.");
        }

        if (!layoutKnown)
        {
            return;
        }

        ReadOnlySpan<byte> bytes = state.bytes;
        int left = BinaryPrimitives.ReadInt32LittleEndian(bytes[OffsetLeft..]);
        int seeded = BinaryPrimitives.ReadInt32LittleEndian(bytes[OffsetSeeded..]);
        ulong next = BinaryPrimitives.ReadUInt64LittleEndian(bytes[OffsetNext..]);
        string? problem = null;
        if (seeded != 1) problem = $"its 'seeded' flag is {seeded}, not 1";
        else if (left is < 1 or > MersenneStateWords) problem = $"its 'left' count is {left}, not in [1, {MersenneStateWords}]";
        else if (next > MersenneStateWords) problem = $"its 'next' index is {next}, not in [0, {MersenneStateWords}]";
        else
        {
            for (int i = 0; i < MersenneStateWords && problem is null; i++)
            {
                ulong word = BinaryPrimitives.ReadUInt64LittleEndian(bytes[(OffsetState + 8 * i)..]);
                if (word > uint.MaxValue) problem = $"its state word {i} is {word}, more than 32 bits";
            }
        }

        if (problem is null)
        {
            int normalValid = BinaryPrimitives.ReadInt32LittleEndian(bytes[OffsetNormalValid..]);
            byte floatValid = bytes[OffsetFloatValid];
            if (normalValid is not (0 or 1)) problem = $"its normal_is_valid flag is {normalValid}, not 0 or 1";
            else if (normalValid == 1 && !double.IsFinite(BinaryPrimitives.ReadDoubleLittleEndian(bytes[OffsetNormalY..]))) problem = "its cached normal sample is not finite";
            else if (floatValid > 1) problem = $"its float-normal flag is {floatValid}, not 0 or 1";
            else if (floatValid == 1 && !float.IsFinite(BinaryPrimitives.ReadSingleLittleEndian(bytes[OffsetFloatSample..]))) problem = "its cached float normal sample is not finite";
        }

        if (problem is not null)
        {
            throw new CheckpointException(file, key,
                $"the generator state {key} is not a valid mt19937 state: {problem}. Refusing to restore it (libtorch would abort the process).");
        }
    }

    /// <summary>The size of a CPU generator state, and whether a fresh generator's state has the layout the checks read.</summary>
    private static (long Size, bool LayoutKnown) ProbeGeneratorLayout()
    {
        using var generator = new Generator(12345);
        using var state = generator.get_state();
        long size = state.numel();
        if (state.dtype != ScalarType.Byte || size != LayoutSize)
        {
            return (size, false);
        }

        ReadOnlySpan<byte> bytes = state.bytes;
        bool known = BinaryPrimitives.ReadUInt64LittleEndian(bytes) == 12345
            && BinaryPrimitives.ReadInt32LittleEndian(bytes[OffsetLeft..]) == 1
            && BinaryPrimitives.ReadInt32LittleEndian(bytes[OffsetSeeded..]) == 1
            && BinaryPrimitives.ReadUInt64LittleEndian(bytes[OffsetNext..]) == 0;
        return (size, known);
    }
}
