using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Peft.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Peft.Fuzz;

/// <summary>
/// Seeded, deterministic mutations of an artifact (a file or a directory of files): the same <see cref="Random"/> seed
/// and the same seed bytes give the same mutation. Binary (bit flips, byte sets, truncation, extension), JSON-aware
/// (types, nulls, huge/negative/non-finite numbers, duplicate keys, deep nesting, removed/renamed keys, invalid UTF-8,
/// lone surrogates), safetensors-aware (header JSON, length prefix, dtype/shape/offset edits, tensor contents: random,
/// zero, NaN, wrong dtype or size) and file-system (symbolic links to /dev/zero, to a directory, loops, dangling; a
/// directory, a FIFO or nothing in place of the file).
/// </summary>
public sealed class Mutator
{
    private static readonly string[] InterestingNumbers =
    [
        "0", "-1", "1", "2", "3", "7", "8.0", "0.5", "-0.5", "1e-300", "1e300", "-1e300", "1e400", "-1e400", "2147483647", "2147483648",
        "-2147483649", "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "2e9", "1e8", "100000",
        "100000000", "200000000", "65536", "1.5", "3.0000000001", "1e-7", "-0",
    ];

    /// <summary>
    /// Keys the loaders read (config.json of every family, adapter_config.json, the checkpoint manifest): inserted into
    /// any JSON object with an interesting value, so optional fields that the seeds do not write are exercised too.
    /// </summary>
    private static readonly string[] KnownKeys =
    [
        "head_dim", "mlp_bias", "attention_bias", "hidden_act", "rope_scaling", "rope_theta", "rms_norm_eps", "use_sliding_window",
        "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings", "torch_dtype", "dtype", "model_type", "n_inner",
        "layer_norm_epsilon", "activation_function", "scale_attn_by_inverse_layer_idx", "add_cross_attention", "scale_attn_weights",
        "resid_pdrop", "embd_pdrop", "attn_pdrop", "n_positions", "n_ctx", "type_vocab_size", "layer_norm_eps", "hidden_dropout_prob",
        "attention_probs_dropout_prob", "classifier_dropout", "num_labels", "id2label", "pad_token_id", "position_embedding_type",
        "exclude_modules", "target_modules", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern", "modules_to_save",
        "num_virtual_tokens", "token_dim", "use_dora", "use_rslora", "lora_bias", "bias", "fan_in_fan_out", "decompose_factor",
        "decompose_both", "lora_dropout", "init_lora_weights", "prompt_tuning_init", "prompt_tuning_init_text", "task_type", "peft_type",
        "r", "lora_alpha", "alpha", "step", "skipped_steps", "total_steps", "data_position", "next_learning_rate", "last_loss",
        "has_sampler_state", "parameters", "files", "format", "format_version", "created_utc", "weight_map", "metadata", "__metadata__",
    ];

    private static readonly string[] RawLiterals = ["NaN", "Infinity", "-Infinity", "1e99999", "0x10", "01", ".5", "+1", "'x'", "undefined", "tru"];

    private readonly Random _random;
    private readonly List<string> _log = new();

    public Mutator(Random random) => _random = random;

    /// <summary>What was done, one entry per mutation.</summary>
    public IReadOnlyList<string> Log => _log;

    /// <summary>The files (full paths) a mutation touched.</summary>
    public List<string> Touched { get; } = new();

    /// <summary>Applies one mutation (sometimes two) to the artifact at <paramref name="artifact"/> (inside <paramref name="caseDir"/>).</summary>
    public void Mutate(string artifact, string caseDir)
    {
        int count = _random.Next(10) == 0 ? 2 : 1;
        for (int i = 0; i < count; i++) MutateOnce(artifact, caseDir);
    }

    private void MutateOnce(string artifact, string caseDir)
    {
        if (Directory.Exists(artifact) && _random.Next(40) == 0)
        {
            // The directory itself replaced.
            FileSystem(artifact, caseDir, isDirectory: true);
            return;
        }

        var files = Directory.Exists(artifact)
            ? Directory.GetFiles(artifact).Where(IsRegularFile).OrderBy(f => f, StringComparer.Ordinal).ToList()
            : IsRegularFile(artifact) ? [artifact] : [];
        if (files.Count == 0)
        {
            _log.Add("nothing left to mutate");
            return;
        }

        var file = files[_random.Next(files.Count)];
        Touched.Add(file);
        try
        {
            MutateFile(file, caseDir);
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException or FormatException)
        {
            // A file an earlier mutation left unreadable to the JSON-aware edits (a lone surrogate cannot be written
            // back, for instance): damage its bytes instead.
            Binary(file);
        }
    }

    private void MutateFile(string file, string caseDir)
    {
        int roll = _random.Next(100);
        if (file.EndsWith(".json", StringComparison.Ordinal))
        {
            if (roll < 62) Json(file);
            else if (roll < 80) JsonText(file);
            else if (roll < 94) Binary(file);
            else FileSystem(file, caseDir, isDirectory: false);
        }
        else if (file.EndsWith(".safetensors", StringComparison.Ordinal))
        {
            if (roll < 30) SafetensorsHeader(file);
            else if (roll < 40) SafetensorsPrefix(file);
            else if (roll < 62) TensorContents(file);
            else if (roll < 92) Binary(file);
            else FileSystem(file, caseDir, isDirectory: false);
        }
        else
        {
            if (roll < 90) Binary(file);
            else FileSystem(file, caseDir, isDirectory: false);
        }
    }

    // ---------------------------------------------------------------- binary

    private void Binary(string file)
    {
        var bytes = File.ReadAllBytes(file);
        string name = Path.GetFileName(file);
        int headerEnd = HeaderEnd(file, bytes);
        int Position() => bytes.Length == 0 ? 0 : _random.Next(2) == 0 && headerEnd > 0 ? _random.Next(Math.Min(headerEnd, bytes.Length)) : _random.Next(bytes.Length);
        switch (_random.Next(6))
        {
            case 0 when bytes.Length > 0:
            {
                int flips = 1 + _random.Next(8);
                for (int i = 0; i < flips; i++)
                {
                    int at = Position();
                    bytes[at] ^= (byte)(1 << _random.Next(8));
                }
                _log.Add($"{name}: {flips} bit flip(s)");
                break;
            }
            case 1 when bytes.Length > 0:
            {
                int at = Position();
                int length = Math.Min(bytes.Length - at, 1 + _random.Next(16));
                byte value = _random.Next(3) switch { 0 => 0, 1 => 0xFF, _ => (byte)_random.Next(256) };
                bytes.AsSpan(at, length).Fill(value);
                _log.Add($"{name}: {length} byte(s) at {at} set to 0x{value:X2}");
                break;
            }
            case 2:
            {
                int keep = _random.Next(4) switch
                {
                    0 => 0,
                    1 => Math.Min(bytes.Length, _random.Next(16)),
                    2 when headerEnd > 0 => Math.Clamp(headerEnd + _random.Next(-4, 5), 0, bytes.Length),
                    _ => bytes.Length == 0 ? 0 : _random.Next(bytes.Length),
                };
                bytes = bytes[..keep];
                _log.Add($"{name}: truncated to {keep} bytes");
                break;
            }
            case 3:
            {
                int extra = _random.Next(3) switch { 0 => 1, 1 => 1 + _random.Next(64), _ => 1 + _random.Next(8192) };
                var tail = new byte[extra];
                if (_random.Next(2) == 0) _random.NextBytes(tail);
                bytes = [.. bytes, .. tail];
                _log.Add($"{name}: extended by {extra} bytes");
                break;
            }
            case 4 when bytes.Length > 1:
            {
                // A block moved: swaps two regions of the file.
                int a = Position(), b = _random.Next(bytes.Length);
                int length = Math.Min(Math.Min(bytes.Length - a, bytes.Length - b), 1 + _random.Next(32));
                var copy = bytes.AsSpan(a, length).ToArray();
                bytes.AsSpan(b, length).CopyTo(bytes.AsSpan(a, length));
                copy.CopyTo(bytes.AsSpan(b, length));
                _log.Add($"{name}: swapped {length} bytes at {a} and {b}");
                break;
            }
            default:
            {
                int at = bytes.Length == 0 ? 0 : Position();
                var insert = new byte[1 + _random.Next(8)];
                _random.NextBytes(insert);
                bytes = [.. bytes[..at], .. insert, .. bytes[at..]];
                _log.Add($"{name}: {insert.Length} random byte(s) inserted at {at}");
                break;
            }
        }
        File.WriteAllBytes(file, bytes);
    }

    private static int HeaderEnd(string file, byte[] bytes)
    {
        if (!file.EndsWith(".safetensors", StringComparison.Ordinal) || bytes.Length < 8) return 0;
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        return length < (ulong)bytes.Length ? 8 + (int)length : 0;
    }

    // ---------------------------------------------------------------- file system

    private void FileSystem(string path, string caseDir, bool isDirectory)
    {
        string name = Path.GetFileName(path);
        Delete(path);
        switch (_random.Next(isDirectory ? 4 : 7))
        {
            case 0:
                File.CreateSymbolicLink(path, "/dev/zero");
                _log.Add($"{name}: symbolic link to /dev/zero");
                break;
            case 1:
            {
                // A fresh directory each time: a second mutation may act on a file inside the first one's.
                var other = Path.Combine(caseDir, "elsewhere-" + _log.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
                Directory.CreateDirectory(other);
                File.WriteAllText(Path.Combine(other, "x.txt"), "x");
                File.CreateSymbolicLink(path, other);
                _log.Add($"{name}: symbolic link to a directory");
                break;
            }
            case 2:
            {
                var loop = path + ".loop";
                File.CreateSymbolicLink(path, loop);
                File.CreateSymbolicLink(loop, path);
                _log.Add($"{name}: symbolic link loop");
                break;
            }
            case 3:
                if (isDirectory)
                {
                    File.WriteAllText(path, "not a directory");
                    _log.Add($"{name}: a file in place of the directory");
                }
                else
                {
                    File.CreateSymbolicLink(path, Path.Combine(caseDir, "missing-target"));
                    _log.Add($"{name}: dangling symbolic link");
                }
                break;
            case 4:
                Directory.CreateDirectory(path);
                _log.Add($"{name}: a directory in place of the file");
                break;
            case 5 when OperatingSystem.IsLinux():
                if (MkFifo(path, Convert.ToInt32("600", 8)) != 0) throw new IOException($"mkfifo {path} failed");
                _log.Add($"{name}: a FIFO in place of the file");
                break;
            default:
                _log.Add($"{name}: deleted");
                break;
        }
    }

    // ---------------------------------------------------------------- JSON

    private void Json(string file)
    {
        var text = File.ReadAllText(file);
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(text);
            Collect(root, "$", []);   // a repeated key (from an earlier mutation) only shows when the object is walked
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            JsonText(file);
            return;
        }
        if (root is null)
        {
            JsonText(file);
            return;
        }
        var (bytes, what) = EditJson(root);
        File.WriteAllBytes(file, bytes);
        _log.Add($"{Path.GetFileName(file)}: {what}");
    }

    /// <summary>Applies one JSON-aware edit to <paramref name="root"/> and serialises it (with raw-text edits spliced in).</summary>
    private (byte[] Bytes, string What) EditJson(JsonNode root)
    {
        var nodes = new List<(string Path, JsonNode? Parent, string? Key, int Index)>();
        Collect(root, "$", nodes);
        // Top-level keys carry most of the meaning: pick one of them half of the time.
        var top = nodes.Where(n => n.Parent == root).ToList();
        var pick = top.Count > 0 && _random.Next(2) == 0 ? top[_random.Next(top.Count)] : nodes.Count > 0 ? nodes[_random.Next(nodes.Count)] : default;
        var raw = new Dictionary<string, string>(StringComparer.Ordinal);
        string what;
        if (pick.Parent is null)
        {
            what = "whole document replaced by " + (_random.Next(2) == 0 ? "[]" : "\"x\"");
            root = what.EndsWith("[]", StringComparison.Ordinal) ? new JsonArray() : JsonValue.Create("x");
        }
        else
        {
            JsonNode? current = pick.Key is not null ? pick.Parent[pick.Key] : pick.Parent[pick.Index];
            switch (_random.Next(14))
            {
                case 0:
                    Set(pick, null);
                    what = $"{pick.Path} = null";
                    break;
                case 12 or 13:
                {
                    // A known key inserted (or replaced) in the picked object, or in the root.
                    var target = (current as JsonObject) ?? (pick.Parent as JsonObject) ?? (root as JsonObject);
                    if (target is null) goto default;
                    string key = KnownKeys[_random.Next(KnownKeys.Length)];
                    JsonNode? value = _random.Next(7) switch
                    {
                        0 => null,
                        1 => JsonValue.Create(_random.Next(2) == 0),
                        2 => JsonValue.Create(_random.Next(3) switch { 0 => "", 1 => "silu", _ => "x" }),
                        3 => new JsonArray(JsonValue.Create(1)),
                        4 => new JsonObject { ["x"] = 1 },
                        _ => JsonValue.Create(Placeholder(raw, InterestingNumbers[_random.Next(InterestingNumbers.Length)]).Trim('"')),
                    };
                    target[key] = value;
                    what = $"{key} = {Short(value)} inserted";
                    break;
                }
                case 1 or 2:
                {
                    string number = InterestingNumbers[_random.Next(InterestingNumbers.Length)];
                    string token = Placeholder(raw, number);
                    Set(pick, token);
                    what = $"{pick.Path} = {number}";
                    break;
                }
                case 3:
                {
                    JsonNode? value = _random.Next(8) switch
                    {
                        0 => JsonValue.Create(true),
                        1 => JsonValue.Create(""),
                        2 => new JsonArray(),
                        3 => new JsonArray(1),
                        4 => new JsonObject { ["a"] = 1 },
                        5 => JsonValue.Create(current?.ToJsonString() ?? "null"),
                        6 => JsonValue.Create(new string('x', 1 + _random.Next(20000))),
                        _ => JsonValue.Create("\u00e9\u4e2d\U0001F600"),
                    };
                    Set(pick, value);
                    what = $"{pick.Path} = {Short(value)}";
                    break;
                }
                case 4 when current is JsonValue v && v.GetValueKind() == JsonValueKind.Number:
                {
                    double d = v.GetValue<double>();
                    double scaled = _random.Next(4) switch { 0 => d * 2, 1 => d / 2, 2 => -d, _ => d + 1 };
                    if (!double.IsFinite(scaled)) scaled = 1e308;
                    Set(pick, JsonValue.Create(scaled));
                    what = $"{pick.Path} = {scaled}";
                    break;
                }
                case 5:
                {
                    string literal = RawLiterals[_random.Next(RawLiterals.Length)];
                    Set(pick, Placeholder(raw, literal));
                    what = $"{pick.Path} = {literal} (invalid JSON literal)";
                    break;
                }
                case 6 when pick.Key is not null:
                    ((JsonObject)pick.Parent).Remove(pick.Key);
                    what = $"{pick.Path} removed";
                    break;
                case 7 when pick.Key is not null:
                {
                    var obj = (JsonObject)pick.Parent;
                    var value = obj[pick.Key];
                    obj.Remove(pick.Key);
                    string renamed = _random.Next(2) == 0 ? pick.Key.ToUpperInvariant() : pick.Key + "_";
                    if (!obj.ContainsKey(renamed)) obj[renamed] = value;
                    what = $"{pick.Path} renamed to {renamed}";
                    break;
                }
                case 8 when pick.Key is not null:
                {
                    // A duplicate key: the same key again with another value (spliced in as text).
                    var obj = (JsonObject)pick.Parent;
                    string token = Placeholder(raw, JsonSerializer.Serialize(pick.Key));
                    string dupKey = token.Trim('"');
                    obj[dupKey] = _random.Next(2) == 0 ? current?.DeepClone() : JsonValue.Create(1);
                    raw[JsonSerializer.Serialize(dupKey)] = JsonSerializer.Serialize(pick.Key);
                    what = $"{pick.Path} duplicated";
                    break;
                }
                case 9:
                {
                    int depth = _random.Next(2) == 0 ? 70 : 3000;
                    Set(pick, Placeholder(raw, new string('[', depth) + new string(']', depth)));
                    what = $"{pick.Path} nested {depth} deep";
                    break;
                }
                case 10:
                {
                    bool surrogate = _random.Next(2) == 0;
                    string token = Placeholder(raw, surrogate ? "\"a\\ud800b\"" : "\u0001INVALID_UTF8\u0001");
                    if (pick.Key is not null && _random.Next(2) == 0)
                    {
                        var obj = (JsonObject)pick.Parent;
                        var value = obj[pick.Key];
                        obj.Remove(pick.Key);
                        obj[token.Trim('"')] = value;
                        raw[JsonSerializer.Serialize(token.Trim('"'))] = raw[token];
                        raw.Remove(token);
                        what = $"{pick.Path} key made {(surrogate ? "a lone surrogate" : "invalid UTF-8")}";
                    }
                    else
                    {
                        Set(pick, token);
                        what = $"{pick.Path} = {(surrogate ? "a lone surrogate" : "invalid UTF-8 bytes")}";
                    }
                    break;
                }
                default:
                {
                    // A type change that keeps the value's text: 8 -> "8", "x" -> ["x"], true -> "true".
                    JsonNode? value = current switch
                    {
                        JsonValue jv when jv.GetValueKind() == JsonValueKind.String => new JsonArray(jv.GetValue<string>()),
                        null => JsonValue.Create("null"),
                        _ => JsonValue.Create(current.ToJsonString()),
                    };
                    Set(pick, value);
                    what = $"{pick.Path} type changed to {Short(value)}";
                    break;
                }
            }
        }

        string text = root.ToJsonString(new JsonSerializerOptions { WriteIndented = _random.Next(2) == 0 });
        foreach (var (token, replacement) in raw.OrderByDescending(p => p.Key.Length))
        {
            if (replacement.StartsWith('\u0001')) continue;
            text = text.Replace(token, replacement, StringComparison.Ordinal);
        }
        var bytes = Encoding.UTF8.GetBytes(text);
        foreach (var (token, replacement) in raw)
        {
            if (!replacement.StartsWith('\u0001')) continue;
            // Invalid UTF-8: the token's bytes replaced by a string holding 0xFF 0xFE.
            var tokenBytes = Encoding.UTF8.GetBytes(token);
            int at = bytes.AsSpan().IndexOf(tokenBytes);
            if (at >= 0) bytes = [.. bytes[..at], (byte)'"', 0xFF, 0xFE, (byte)'"', .. bytes[(at + tokenBytes.Length)..]];
        }
        return (bytes, what);
    }

    private string Placeholder(Dictionary<string, string> raw, string replacement)
    {
        string token = $"\"FUZZTOKEN{raw.Count}Q{_random.Next(1_000_000)}Q\"";
        raw[token] = replacement;
        return token;
    }

    private static void Set((string Path, JsonNode? Parent, string? Key, int Index) pick, object? value)
    {
        JsonNode? node = value switch
        {
            null => null,
            JsonNode n => n,
            string token => JsonValue.Create(token.Trim('"')),
            _ => throw new ArgumentException("unexpected value"),
        };
        if (value is string s && s.StartsWith('"'))
        {
            // The placeholder is written as a string and replaced by its raw text after serialisation.
            node = JsonValue.Create(s.Trim('"'));
        }
        if (pick.Key is not null) pick.Parent![pick.Key] = node;
        else ((JsonArray)pick.Parent!)[pick.Index] = node;
    }

    private static void Collect(JsonNode? node, string path, List<(string, JsonNode?, string?, int)> nodes)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (key, value) in obj.ToList())
                {
                    nodes.Add(($"{path}.{key}", obj, key, -1));
                    if (nodes.Count < 5000) Collect(value, $"{path}.{key}", nodes);
                }
                break;
            case JsonArray array:
                for (int i = 0; i < array.Count; i++)
                {
                    nodes.Add(($"{path}[{i}]", array, null, i));
                    if (nodes.Count < 5000) Collect(array[i], $"{path}[{i}]", nodes);
                }
                break;
        }
    }

    private static string Short(JsonNode? node)
    {
        var text = node?.ToJsonString() ?? "null";
        return text.Length > 40 ? text[..37] + "..." : text;
    }

    /// <summary>Text-level damage a JSON parser must survive: cut, garbage, BOM, deep nesting, a huge document.</summary>
    private void JsonText(string file)
    {
        var bytes = File.ReadAllBytes(file);
        string name = Path.GetFileName(file);
        switch (_random.Next(6))
        {
            case 0:
                bytes = bytes[..(bytes.Length == 0 ? 0 : _random.Next(bytes.Length))];
                _log.Add($"{name}: JSON cut short");
                break;
            case 1:
                bytes = [0xEF, 0xBB, 0xBF, .. bytes];
                _log.Add($"{name}: UTF-8 BOM added");
                break;
            case 2:
                bytes = Encoding.UTF8.GetBytes(new string('[', 100_000) + new string(']', 100_000));
                _log.Add($"{name}: 100000 nested arrays");
                break;
            case 3:
            {
                var huge = new StringBuilder("{\"pad\": \"");
                huge.Append('x', 9 << 20);
                huge.Append("\"}");
                bytes = Encoding.UTF8.GetBytes(huge.ToString());
                _log.Add($"{name}: a 9 MiB document");
                break;
            }
            case 4:
                bytes = Encoding.Unicode.GetBytes(Encoding.UTF8.GetString(bytes));
                _log.Add($"{name}: re-encoded as UTF-16");
                break;
            default:
                bytes = [.. bytes, .. "\n{\"again\": 1}"u8.ToArray()];
                _log.Add($"{name}: trailing content after the document");
                break;
        }
        File.WriteAllBytes(file, bytes);
    }

    // ---------------------------------------------------------------- safetensors

    private static (ulong Length, byte[] Header, byte[] Data)? SplitSafetensors(byte[] bytes)
    {
        if (bytes.Length < 8) return null;
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (length > (ulong)(bytes.Length - 8)) return null;
        return (length, bytes[8..(8 + (int)length)], bytes[(8 + (int)length)..]);
    }

    private void SafetensorsHeader(string file)
    {
        var bytes = File.ReadAllBytes(file);
        var split = SplitSafetensors(bytes);
        JsonObject? header = null;
        try
        {
            header = split is null ? null : JsonNode.Parse(split.Value.Header) as JsonObject;
            Collect(header, "$", []);
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            header = null;
        }
        if (split is null || header is null)
        {
            Binary(file);
            return;
        }

        string name = Path.GetFileName(file);
        byte[] newHeader;
        var tensors = header.Where(p => p.Key != "__metadata__" && p.Value is JsonObject).Select(p => p.Key).ToList();
        if (tensors.Count > 0 && _random.Next(2) == 0)
        {
            // A targeted edit of one tensor entry.
            string tensor = tensors[_random.Next(tensors.Count)];
            var entry = (JsonObject)header[tensor]!;
            string what;
            byte[]? spliced = null;
            switch (_random.Next(7))
            {
                case 0:
                {
                    string[] dtypes = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "f32", "", "U64", "C64"];
                    string dtype = dtypes[_random.Next(dtypes.Length)];
                    entry["dtype"] = dtype;
                    what = $"dtype '{dtype}'";
                    break;
                }
                case 1 when entry["shape"] is JsonArray shape:
                {
                    long[] choices = [0, 1, -1, 2, 3, 1L << 31, 1L << 40, long.MaxValue];
                    if (shape.Count > 0 && _random.Next(3) > 0)
                    {
                        int i = _random.Next(shape.Count);
                        long v = choices[_random.Next(choices.Length)];
                        shape[i] = v;
                        what = $"shape[{i}] = {v}";
                    }
                    else if (shape.Count > 0 && _random.Next(2) == 0)
                    {
                        shape.RemoveAt(shape.Count - 1);
                        what = "one dimension fewer";
                    }
                    else
                    {
                        shape.Add(1);
                        what = "one dimension more";
                    }
                    break;
                }
                case 2 when entry["data_offsets"] is JsonArray offsets && offsets.Count == 2:
                {
                    long[] deltas = [1, -1, 8, -8, 1L << 32, long.MaxValue / 2];
                    int i = _random.Next(2);
                    long delta = deltas[_random.Next(deltas.Length)];
                    offsets[i] = offsets[i]!.GetValue<long>() + delta;
                    what = $"data_offsets[{i}] += {delta}";
                    break;
                }
                case 3:
                    entry[_random.Next(2) == 0 ? "shape" : "data_offsets"] = _random.Next(2) == 0 ? null : JsonValue.Create("0");
                    what = "shape or data_offsets of the wrong type";
                    break;
                case 4:
                {
                    // Another entry with the same data: overlapping tensors.
                    header[tensor + ".copy"] = entry.DeepClone();
                    what = "a second entry over the same bytes";
                    break;
                }
                case 5:
                {
                    // The entry edited like any JSON (raw literals included), spliced back as bytes.
                    var (edited, editWhat) = EditJson(entry.DeepClone());
                    header[tensor] = "FUZZENTRYQ";
                    var text = Encoding.UTF8.GetBytes(header.ToJsonString());
                    var marker = "\"FUZZENTRYQ\""u8;
                    int at = text.AsSpan().IndexOf(marker);
                    spliced = [.. text[..at], .. edited, .. text[(at + marker.Length)..]];
                    what = editWhat;
                    break;
                }
                default:
                    entry["dtype"] = entry["dtype"]?.DeepClone();
                    entry["extra"] = new JsonObject { ["nested"] = new JsonArray(1, 2) };
                    what = "an unknown key in the entry";
                    break;
            }
            newHeader = spliced ?? Encoding.UTF8.GetBytes(header.ToJsonString());
            _log.Add($"{name}: header, tensor '{tensor}': {what}");
        }
        else
        {
            var (edited, what) = EditJson(header);
            newHeader = edited;
            _log.Add($"{name}: header {what}");
        }

        if (_random.Next(2) == 0)
        {
            int pad = (8 - newHeader.Length % 8) % 8;
            newHeader = [.. newHeader, .. Enumerable.Repeat((byte)' ', pad)];
        }
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)newHeader.Length);
        File.WriteAllBytes(file, [.. prefix, .. newHeader, .. split.Value.Data]);
    }

    private void SafetensorsPrefix(string file)
    {
        var bytes = File.ReadAllBytes(file);
        if (bytes.Length < 8)
        {
            Binary(file);
            return;
        }
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        ulong[] values = [0, 1, 2, length - 1, length + 1, length + 8, (ulong)bytes.Length, (ulong)bytes.Length - 8, 100_000_000, 100_000_001,
            (ulong)long.MaxValue, ulong.MaxValue, 1UL << 32, (ulong)_random.NextInt64()];
        ulong value = values[_random.Next(values.Length)];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        File.WriteAllBytes(file, bytes);
        _log.Add($"{Path.GetFileName(file)}: header length prefix {length} -> {value}");
    }

    /// <summary>A valid file whose tensor contents (or dtype, or size) are wrong: random or zero bytes, NaN/Inf, another dtype, one element more.</summary>
    private void TensorContents(string file)
    {
        List<KeyValuePair<string, Tensor>> tensors;
        IReadOnlyDictionary<string, string> metadata;
        try
        {
            using var reader = SafetensorsFile.Open(file);
            metadata = reader.Metadata.ToDictionary();
            tensors = reader.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, reader.ReadTensor(t.Name))).ToList();
        }
        catch (SafetensorsFormatException)
        {
            Binary(file);
            return;
        }

        try
        {
            if (tensors.Count == 0)
            {
                Binary(file);
                return;
            }
            int index = _random.Next(tensors.Count);
            var (name, original) = tensors[index];
            Tensor replacement;
            string what;
            switch (_random.Next(6))
            {
                case 0:
                    replacement = zeros_like(original);
                    what = "all zero";
                    break;
                case 1:
                {
                    replacement = empty_like(original);
                    var bytes = new byte[replacement.numel() * replacement.element_size()];
                    _random.NextBytes(bytes);
                    if (replacement.dtype == ScalarType.Bool) for (int i = 0; i < bytes.Length; i++) bytes[i] &= 1;
                    if (bytes.Length > 0) replacement.bytes = bytes;
                    what = "random bytes";
                    break;
                }
                case 2 when original.is_floating_point() && original.numel() > 0:
                {
                    replacement = original.clone();
                    double[] bad = [double.NaN, double.PositiveInfinity, double.NegativeInfinity];
                    using var flat = replacement.view(-1);
                    double value = bad[_random.Next(bad.Length)];
                    using var element = flat.narrow(0, _random.NextInt64(flat.numel()), 1);
                    element.fill_(value);
                    what = $"one element {value}";
                    break;
                }
                case 3:
                {
                    var dtypes = new[] { ScalarType.Float32, ScalarType.Float64, ScalarType.Int64, ScalarType.Byte, ScalarType.Float16 };
                    var dtype = dtypes[_random.Next(dtypes.Length)];
                    replacement = original.to(dtype);
                    what = $"converted to {dtype}";
                    break;
                }
                case 4:
                {
                    long n = original.numel();
                    using var flat = original.reshape(-1);
                    using var one = zeros(1, dtype: original.dtype);
                    replacement = _random.Next(2) == 0 || n == 0 ? cat([flat, one]) : flat.narrow(0, 0, n - 1).clone();
                    what = $"flattened to {replacement.numel()} elements";
                    break;
                }
                default:
                    replacement = original.reshape(-1).clone();
                    what = "reshaped to 1-D";
                    break;
            }
            tensors[index] = new(name, replacement);
            original.Dispose();
            SafetensorsFile.Write(file, tensors, metadata.Count > 0 ? metadata : null);
            _log.Add($"{Path.GetFileName(file)}: tensor '{name}' {what}");
        }
        finally
        {
            foreach (var pair in tensors) pair.Value.Dispose();
        }
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>Whether <paramref name="path"/> is itself a regular file (not a link, directory, device, FIFO or socket).</summary>
    public static bool IsRegularFile(string path) => TypeOf(path) == 0x8000;

    /// <summary>Whether <paramref name="path"/> is itself a symbolic link (whatever it points to, if anything).</summary>
    public static bool IsLink(string path) => TypeOf(path) == 0xA000;

    /// <summary>The file type bits of lstat(2) (S_IFMT) for <paramref name="path"/>, without following a link; 0 when nothing is there.</summary>
    private static uint TypeOf(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is not null || (File.GetAttributes(path) & FileAttributes.ReparsePoint) != 0) return 0xA000;
            return Directory.Exists(path) ? 0x4000u : info.Exists ? 0x8000u : 0;
        }
        var buffer = new byte[256];
        if (LStat(path, buffer) != 0) return 0;
        int offset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        return BitConverter.ToUInt32(buffer, offset) & 0xF000;
    }

    [DllImport("libc", EntryPoint = "lstat", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
#pragma warning disable SYSLIB1054
    private static extern int LStat(string path, byte[] buffer);
#pragma warning restore SYSLIB1054

    /// <summary>Deletes a file, link, FIFO or directory tree without following links.</summary>
    public static void Delete(string path)
    {
        uint type = TypeOf(path);
        if (type == 0) return;
        if (type == 0x4000)
        {
            // A real directory (a link to one is 0xA000 and is only unlinked below).
            foreach (var entry in Directory.EnumerateFileSystemEntries(path)) Delete(entry);
            Directory.Delete(path);
            return;
        }
        // unlink(2): a file, a FIFO, or a link itself, whatever it points to.
        if (OperatingSystem.IsLinux() ? Unlink(path) != 0 : !DeleteLink(path)) throw new IOException($"cannot remove {path}");
    }

    private static bool DeleteLink(string path)
    {
        File.Delete(path);
        return true;
    }

    [DllImport("libc", EntryPoint = "unlink", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
#pragma warning disable SYSLIB1054
    private static extern int Unlink(string path);
#pragma warning restore SYSLIB1054

    [DllImport("libc", EntryPoint = "mkfifo", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
#pragma warning disable SYSLIB1054
    private static extern int MkFifo(string path, int mode);
#pragma warning restore SYSLIB1054
}
